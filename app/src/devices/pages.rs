use leptos::prelude::*;
use leptos_router::{
    components::{Form, A},
    hooks::{use_params_map, use_query_map},
};

use super::{
    get_device, list_devices, AssignDevice, CreateDevice, DeleteDevice, Device, UnassignDevice,
    UpdateDevice,
};
use crate::accounts::{list_client_options, ClientOption};
use crate::auth::{Gate, Role};
use crate::error::AppError;
use crate::ui::{CopyId, ErrorBox, FieldMessage, FormMessage, Pager, PastTheEnd};

/// A maximum power as people read it: up to three decimals (watts), thousands grouped.
fn kw(value: f64) -> String {
    format!("{} kW", crate::live::format_number(value, 3))
}

#[component]
pub fn DevicesPage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <DeviceList/>
        </Gate>
    }
}

#[component]
fn DeviceList() -> impl IntoView {
    let query = use_query_map();
    let owner = Memo::new(move |_| query.read().get("owner").unwrap_or_else(|| "all".into()));
    let page = crate::ui::use_page_query();
    let deleted = move || query.read().get("deleted").is_some();
    let devices = crate::codec::resource(
        move || (owner.get(), page.get()),
        |(owner, page)| list_devices(Some(owner), Some(page)),
    );
    view! {
        <div class="page-head">
            <h1>"Devices"</h1>
            <A href="/admin/devices/new" attr:class="button primary">"New device"</A>
        </div>
        <Show when=deleted>
            <p class="notice" role="status">"Device deleted."</p>
        </Show>
        <div class="toolbar">
            <OwnerFilterForm owner/>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading devices…"</p> }>
            {move || Suspend::new(async move {
                match devices.await {
                    Ok(list) if list.total == 0 => {
                        view! {
                            <p class="empty">
                                "No devices match this filter. Add one with “New device”."
                            </p>
                        }
                            .into_any()
                    }
                    Ok(list) => {
                        let (pages, total, current) = (list.pages(), list.total, list.page);
                        let owner = owner.get_untracked();
                        let href = format!("/admin/devices?owner={owner}&page={{page}}");
                        if list.items.is_empty() {
                            return view! { <PastTheEnd pages href/> }.into_any();
                        }
                        view! {
                            <DeviceTable devices=list.items/>
                            <Pager page=current pages total href/>
                        }
                            .into_any()
                    }
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// "Show: all devices / unassigned / a client's", submitted as `?owner=` to this page.
#[component]
pub fn OwnerFilterForm(owner: Memo<String>) -> impl IntoView {
    let clients = crate::codec::resource(|| (), |_| list_client_options());
    view! {
        <Form method="GET" action="">
            <label for="owner-filter" class="inline">"Show"</label>
            <select id="owner-filter" name="owner">
                <option value="all" selected=move || owner.get() == "all">"All devices"</option>
                <option value="unassigned" selected=move || owner.get() == "unassigned">
                    "Unassigned"
                </option>
                <Transition>
                    {move || Suspend::new(async move {
                        clients
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| {
                                let id = c.id.to_string();
                                let selected = owner.get_untracked() == id;
                                view! { <option value=id selected=selected>{c.label}</option> }
                            })
                            .collect_view()
                    })}
                </Transition>
            </select>
            <button type="submit">"Filter"</button>
        </Form>
    }
}

#[component]
fn DeviceTable(devices: Vec<Device>) -> impl IntoView {
    view! {
        <table class="list stack" data-testid="devices-table">
            <thead>
                <tr>
                    <th>"Description"</th>
                    <th>"Address"</th>
                    <th class="num">"Max power"</th>
                    <th>"Client"</th>
                    <th>"Id"</th>
                </tr>
            </thead>
            <tbody>
                {devices
                    .into_iter()
                    .map(|d| {
                        let href = format!("/admin/devices/{}", d.id);
                        let short = d.id.to_string()[..8].to_string();
                        view! {
                            <tr>
                                <td><A href=href>{d.description}</A></td>
                                <td data-label="Address">{d.address}</td>
                                <td class="num" data-label="Max power">{kw(d.max_power_kw)}</td>
                                <td data-label="Client" data-testid="device-client">
                                    {match d.owner {
                                        Some(o) => view! {
                                            <span>{o.display_name}</span>
                                            " "
                                            <span class="muted">{format!("({})", o.username)}</span>
                                        }
                                            .into_any(),
                                        None => view! { <span class="muted">"Unassigned"</span> }.into_any(),
                                    }}
                                </td>
                                <td data-label="Id"><code class="uuid" title=d.id.to_string()>{short}"…"</code></td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// `<option>`s for a client picker, with `selected` preselected.
fn client_options(clients: Vec<ClientOption>, selected: Option<String>) -> impl IntoView {
    clients
        .into_iter()
        .map(|c| {
            let id = c.id.to_string();
            let is_selected = selected.as_deref() == Some(id.as_str());
            view! { <option value=id selected=is_selected>{c.label}</option> }
        })
        .collect_view()
}

#[component]
pub fn NewDevicePage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <NewDeviceForm/>
        </Gate>
    }
}

#[component]
fn NewDeviceForm() -> impl IntoView {
    let create = ServerAction::<CreateDevice>::new();
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let pending = create.pending();
    let clients = crate::codec::resource(|| (), |_| list_client_options());
    view! {
        <div class="page-head">
            <h1>"New device"</h1>
            <A href="/admin/devices">"← All devices"</A>
        </div>
        <section class="card">
            <ActionForm action=create>
                <DeviceFields error description="" address="" max_power_kw=""/>
                <label for="owner_id">"Client"</label>
                <select id="owner_id" name="owner_id">
                    <option value="">"Unassigned"</option>
                    <Transition>
                        {move || Suspend::new(async move {
                            client_options(clients.await.unwrap_or_default(), None)
                        })}
                    </Transition>
                </select>
                <FieldMessage error field="owner_id"/>
                <label for="meter_id">"Meter id (optional)"</label>
                <input id="meter_id" name="meter_id" autocomplete="off" spellcheck="false"
                    placeholder="Blank: a new id is made"/>
                <p class="hint">
                    "The UUID the meter sends as sensor_id, when the meter exists already. Its "
                    "earlier messages wait under "<A href="/admin/dead-letters">"Dead letters"</A>
                    " to be replayed."
                </p>
                <FieldMessage error field="meter_id"/>
                <FormMessage error/>
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Creating…" } else { "Create device" }}
                </button>
            </ActionForm>
        </section>
    }
}

/// The editable fields of a device, with their messages.
#[component]
fn DeviceFields(
    error: Signal<Option<AppError>>,
    #[prop(into)] description: String,
    #[prop(into)] address: String,
    #[prop(into)] max_power_kw: String,
) -> impl IntoView {
    view! {
        <label for="description">"Description"</label>
        <input id="description" name="description" value=description placeholder="Heat pump, main meter…"/>
        <FieldMessage error field="description"/>
        <label for="address">"Address"</label>
        <input id="address" name="address" value=address/>
        <FieldMessage error field="address"/>
        <label for="max_power_kw">"Maximum power (kW)"</label>
        <input id="max_power_kw" name="max_power_kw" inputmode="decimal" value=max_power_kw/>
        <p class="hint">"Power above this raises a peak alert."</p>
        <FieldMessage error field="max_power_kw"/>
    }
}

#[component]
pub fn DevicePage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <DeviceDetail/>
        </Gate>
    }
}

#[component]
fn DeviceDetail() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let update = ServerAction::<UpdateDevice>::new();
    let assign = ServerAction::<AssignDevice>::new();
    let unassign = ServerAction::<UnassignDevice>::new();
    let device = crate::codec::resource(
        move || {
            (
                id.get(),
                update.version().get(),
                assign.version().get(),
                unassign.version().get(),
            )
        },
        |(id, ..)| get_device(id),
    );
    let clients = crate::codec::resource(|| (), |_| list_client_options());
    let created = move || query.read().get("created").is_some();
    // What the last change did; a change under way clears what an earlier one said.
    let notice = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(Ok(device)) = assign.value().get() {
            notice.set(Some(match device.owner {
                Some(o) => format!("Assigned to {} ({}).", o.display_name, o.username),
                None => "Unassigned.".into(),
            }));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(_)) = unassign.value().get() {
            notice.set(Some("Unassigned: no client sees this device now.".into()));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(_)) = update.value().get() {
            notice.set(Some("Saved.".into()));
        }
    });
    Effect::new(move |_| {
        if assign.pending().get() || unassign.pending().get() || update.pending().get() {
            notice.set(None);
        }
    });
    view! {
        <div class="page-head">
            <h1>"Device"</h1>
            <A href="/admin/devices">"← All devices"</A>
        </div>
        <Show when=move || created() && notice.with(Option::is_none)>
            <p class="notice" role="status">"Device created."</p>
        </Show>
        {move || {
            notice
                .get()
                .map(|text| {
                    view! { <p class="notice" role="status" data-testid="device-notice">{text}</p> }
                })
        }}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match (device.await, clients.await) {
                    (Ok(device), Ok(clients)) => {
                        view! { <DeviceEditor device clients update assign unassign/> }.into_any()
                    }
                    (Err(error), _) | (_, Err(error)) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn DeviceEditor(
    device: Device,
    clients: Vec<ClientOption>,
    update: ServerAction<UpdateDevice>,
    assign: ServerAction<AssignDevice>,
    unassign: ServerAction<UnassignDevice>,
) -> impl IntoView {
    let delete = ServerAction::<DeleteDevice>::new();
    let error = Signal::derive(move || update.value().get().and_then(Result::err));
    let assign_error = Signal::derive(move || {
        assign
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| unassign.value().get().and_then(Result::err))
    });
    let delete_error = Signal::derive(move || delete.value().get().and_then(Result::err));
    let pending = update.pending();
    let id = device.id.to_string();
    let (assign_id, unassign_id, update_id, delete_id) =
        (id.clone(), id.clone(), id.clone(), id.clone());
    let owner_id = device.owner.as_ref().map(|o| o.id.to_string());
    let owner_view = match device.owner.clone() {
        Some(o) => {
            let href = format!("/admin/accounts/{}", o.id);
            view! { <A href=href>{o.display_name}</A> " (" {o.username} ")" }.into_any()
        }
        None => view! { <span class="muted">"Unassigned"</span> }.into_any(),
    };
    let is_assigned = device.owner.is_some();
    view! {
        <section class="card">
            <dl class="facts">
                <dt>"Device id (sensor_id)"</dt>
                <dd><CopyId id/></dd>
                <dt>"Client"</dt>
                <dd data-testid="device-owner">{owner_view}</dd>
                <dt>"Created"</dt>
                <dd>{crate::time::minute_utc(&device.created_at)}</dd>
                <dt>"Consumption"</dt>
                <dd><a href=format!("/devices/{}/day", device.id)>"History by day and month →"</a></dd>
            </dl>
        </section>
        <section class="card">
            <h2>"Assignment"</h2>
            <ActionForm action=assign>
                <input type="hidden" name="id" value=assign_id/>
                <label for="client_id">"Client"</label>
                <div class="inline-form">
                    <select id="client_id" name="client_id">
                        <option value="" disabled=true selected=owner_id.is_none()>
                            "Choose a client…"
                        </option>
                        {client_options(clients, owner_id)}
                    </select>
                    <button type="submit" class="primary">"Assign"</button>
                </div>
                <FieldMessage error=assign_error field="client_id"/>
            </ActionForm>
            {is_assigned
                .then(move || {
                    view! {
                        <ActionForm action=unassign>
                            <input type="hidden" name="id" value=unassign_id/>
                            <button type="submit">"Unassign"</button>
                        </ActionForm>
                    }
                })}
            <FormMessage error=assign_error/>
        </section>
        <section class="card">
            <h2>"Details"</h2>
            <ActionForm action=update>
                <input type="hidden" name="id" value=update_id/>
                <DeviceFields
                    error
                    description=device.description
                    address=device.address
                    max_power_kw=device.max_power_kw.to_string()
                />
                <FormMessage error/>
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Saving…" } else { "Save changes" }}
                </button>
            </ActionForm>
        </section>
        <details class="card danger">
            <summary>"Delete this device…"</summary>
            <p>"The device is removed for good. Meters sending this id will be rejected."</p>
            <ActionForm action=delete>
                <input type="hidden" name="id" value=delete_id/>
                <FormMessage error=delete_error/>
                <button type="submit" class="danger">"Yes, delete this device"</button>
            </ActionForm>
        </details>
    }
}
