use leptos::prelude::*;
use leptos_router::{
    components::{Form, A},
    hooks::{use_params_map, use_query_map},
};

use super::{get_account, list_accounts, Account, CreateAccount, DeleteAccount, UpdateAccount};
use crate::auth::{Gate, Role};
use crate::ui::{encode_component, ErrorBox, FieldMessage, FormMessage, Pager, PastTheEnd};

#[component]
pub fn AccountsPage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <AccountList/>
        </Gate>
    }
}

#[component]
fn AccountList() -> impl IntoView {
    let query = use_query_map();
    let q = Memo::new(move |_| query.read().get("q").unwrap_or_default());
    let role = Memo::new(move |_| query.read().get("role").unwrap_or_else(|| "client".into()));
    let page = crate::ui::use_page_query();
    let deleted = move || query.read().get("deleted").is_some();
    let accounts = crate::codec::resource(
        move || (q.get(), role.get(), page.get()),
        |(q, role, page)| list_accounts(Some(q), Some(role), Some(page)),
    );
    let tab = move |value: &'static str, label: &'static str| {
        let href = format!("/admin/accounts?role={value}");
        view! {
            <A href=href attr:class=move || if role.get() == value { "tab active" } else { "tab" }>
                {label}
            </A>
        }
    };
    view! {
        <div class="page-head">
            <h1>"Accounts"</h1>
            <A href="/admin/accounts/new" attr:class="button primary">"New account"</A>
        </div>
        <Show when=deleted>
            <p class="notice" role="status">"Account deleted."</p>
        </Show>
        <div class="toolbar">
            <nav class="tabs">
                {tab("client", "Clients")} {tab("admin", "Admins")} {tab("all", "All")}
            </nav>
            <Form method="GET" action="">
                <input type="hidden" name="role" value=move || role.get()/>
                <input
                    type="search"
                    name="q"
                    placeholder="Search username or name"
                    aria-label="Search accounts"
                    maxlength=crate::validate::SEARCH_MAX.to_string()
                    value=move || q.get()
                />
                <button type="submit">"Search"</button>
            </Form>
        </div>
        <Transition fallback=|| view! { <p class="loading">"Loading accounts…"</p> }>
            {move || Suspend::new(async move {
                match accounts.await {
                    Ok(list) if list.total == 0 => {
                        let text = if q.get_untracked().is_empty() {
                            "No accounts here yet. Create the first one with “New account”."
                                .to_string()
                        } else {
                            format!("No accounts match “{}”.", q.get_untracked())
                        };
                        view! { <p class="empty">{text}</p> }.into_any()
                    }
                    Ok(list) => {
                        let (pages, total, current) = (list.pages(), list.total, list.page);
                        let (q, role) = (q.get_untracked(), role.get_untracked());
                        let href = format!(
                            "/admin/accounts?role={role}&q={}&page={{page}}",
                            encode_component(&q),
                        );
                        if list.items.is_empty() {
                            return view! { <PastTheEnd pages href/> }.into_any();
                        }
                        view! {
                            <AccountTable accounts=list.items/>
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

#[component]
fn AccountTable(accounts: Vec<Account>) -> impl IntoView {
    view! {
        <table class="list" data-testid="accounts-table">
            <thead>
                <tr>
                    <th>"Username"</th>
                    <th>"Name"</th>
                    <th>"Role"</th>
                    <th class="num">"Devices"</th>
                    <th>"Created"</th>
                </tr>
            </thead>
            <tbody>
                {accounts
                    .into_iter()
                    .map(|a| {
                        let href = format!("/admin/accounts/{}", a.id);
                        view! {
                            <tr>
                                <td><A href=href>{a.username}</A></td>
                                <td>{a.display_name}</td>
                                <td><span class="badge">{a.role.as_str()}</span></td>
                                <td class="num">{a.device_count}</td>
                                <td>{a.created_at.get(..10).unwrap_or_default().to_string()}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
pub fn NewAccountPage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <NewAccountForm/>
        </Gate>
    }
}

#[component]
fn NewAccountForm() -> impl IntoView {
    let create = ServerAction::<CreateAccount>::new();
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let pending = create.pending();
    view! {
        <div class="page-head">
            <h1>"New account"</h1>
            <A href="/admin/accounts">"← All accounts"</A>
        </div>
        <section class="card">
            <ActionForm action=create>
                <label for="username">"Username"</label>
                <input id="username" name="username" autocomplete="off"/>
                <FieldMessage error field="username"/>
                <label for="display_name">"Display name"</label>
                <input id="display_name" name="display_name"/>
                <FieldMessage error field="display_name"/>
                <label for="password">"Initial password"</label>
                <input id="password" name="password" type="password" autocomplete="new-password"/>
                <p class="hint">"At least 8 characters. Share it with the account holder."</p>
                <FieldMessage error field="password"/>
                <label for="role">"Role"</label>
                <select id="role" name="role">
                    <option value="client" selected=true>"Client (utility customer)"</option>
                    <option value="admin">"Admin (utility staff)"</option>
                </select>
                <FieldMessage error field="role"/>
                <FormMessage error/>
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Creating…" } else { "Create account" }}
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn AccountPage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <AccountDetail/>
        </Gate>
    }
}

#[component]
fn AccountDetail() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let update = ServerAction::<UpdateAccount>::new();
    let account = crate::codec::resource(
        move || (id.get(), update.version().get()),
        |(id, _)| get_account(id),
    );
    let created = move || query.read().get("created").is_some();
    view! {
        <div class="page-head">
            <h1>"Account"</h1>
            <A href="/admin/accounts">"← All accounts"</A>
        </div>
        <Show when=created>
            <p class="notice" role="status">"Account created."</p>
        </Show>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match account.await {
                    Ok(account) => view! { <AccountEditor account update/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn AccountEditor(account: Account, update: ServerAction<UpdateAccount>) -> impl IntoView {
    let delete = ServerAction::<DeleteAccount>::new();
    let error = Signal::derive(move || update.value().get().and_then(Result::err));
    let saved = move || matches!(update.value().get(), Some(Ok(_)));
    let delete_error = Signal::derive(move || delete.value().get().and_then(Result::err));
    let pending = update.pending();
    let deleting = delete.pending();
    let id = account.id.to_string();
    let (update_id, delete_id) = (id.clone(), id.clone());
    let devices_href = format!("/admin/devices?owner={}", account.id);
    view! {
        <section class="card">
            <dl class="facts">
                <dt>"Id"</dt>
                <dd><code class="uuid">{id}</code></dd>
                <dt>"Role"</dt>
                <dd><span class="badge">{account.role.as_str()}</span></dd>
                <dt>"Devices"</dt>
                <dd>
                    {account.device_count} " · " <A href=devices_href>"View devices"</A>
                </dd>
                <dt>"Created"</dt>
                <dd>{crate::time::minute_utc(&account.created_at)}</dd>
            </dl>
        </section>
        <section class="card">
            <h2>"Details"</h2>
            <ActionForm action=update>
                <input type="hidden" name="id" value=update_id/>
                <label for="username">"Username"</label>
                <input id="username" name="username" value=account.username autocomplete="off"/>
                <FieldMessage error field="username"/>
                <label for="display_name">"Display name"</label>
                <input id="display_name" name="display_name" value=account.display_name/>
                <FieldMessage error field="display_name"/>
                <label for="password">"New password"</label>
                <input id="password" name="password" type="password" autocomplete="new-password"/>
                <p class="hint">
                    "Leave empty to keep the current password. A new password signs the account out everywhere."
                </p>
                <FieldMessage error field="password"/>
                <FormMessage error/>
                <Show when=saved>
                    <p class="notice" role="status">"Saved."</p>
                </Show>
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Saving…" } else { "Save changes" }}
                </button>
            </ActionForm>
        </section>
        <details class="card danger">
            <summary>"Delete this account…"</summary>
            <p>
                "The account is removed and signed out everywhere. Its devices stay, unassigned."
            </p>
            <ActionForm action=delete>
                <input type="hidden" name="id" value=delete_id/>
                <FormMessage error=delete_error/>
                <button type="submit" class="danger" disabled=move || deleting.get()>
                    "Yes, delete this account"
                </button>
            </ActionForm>
        </details>
    }
}
