use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_query_map};

use super::{
    dead_letter_groups, list_dead_letters, reason_label, DeadLetter, ReasonGroup,
    ReplayDeadLetters, ReplayReport,
};
use crate::auth::{Gate, Role};
use crate::error::AppError;
use crate::live::format_number;
use crate::ui::{encode_component, ErrorBox, FieldMessage, FormMessage, Pager, PastTheEnd};

#[component]
pub fn DeadLettersPage() -> impl IntoView {
    view! {
        <Gate role=Role::Admin>
            <DeadLetters/>
        </Gate>
    }
}

fn count(n: i64) -> String {
    format_number(n as f64, 0)
}

#[component]
fn DeadLetters() -> impl IntoView {
    let query = use_query_map();
    let reason = Memo::new(move |_| query.read().get("reason").unwrap_or_default());
    let page = crate::ui::use_page_query();
    let replay = ServerAction::<ReplayDeadLetters>::new();
    let groups = crate::codec::resource(move || replay.version().get(), |_| dead_letter_groups());
    let letters = crate::codec::resource(
        move || (reason.get(), page.get(), replay.version().get()),
        |(reason, page, _)| async move {
            if reason.is_empty() {
                Ok(None)
            } else {
                list_dead_letters(reason, Some(page)).await.map(Some)
            }
        },
    );
    let error = Signal::derive(move || replay.value().get().and_then(Result::err));
    let report = move || replay.value().get().and_then(Result::ok);
    view! {
        <div class="page-head">
            <h1>"Dead letters"</h1>
        </div>
        <p class="lead">
            "Meter messages that could not be stored, by reason. Fix the cause (for example, "
            "create the device with the meter's id), then replay them: they are checked again, "
            "and a reading already stored is never stored twice."
        </p>
        {move || {
            report()
                .map(|r: ReplayReport| {
                    view! { <p class="notice" role="status" data-testid="replay-report">{r.summary()}</p> }
                })
        }}
        <FormMessage error/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match groups.await {
                    Ok(groups) if groups.is_empty() => {
                        view! {
                            <p class="empty">"No dead letters: every message so far was stored."</p>
                        }
                            .into_any()
                    }
                    Ok(groups) => view! { <GroupTable groups current=reason/> }.into_any(),
                    Err(error) => view! { <ErrorBox error/> }.into_any(),
                }
            })}
        </Transition>
        <Transition>
            {move || Suspend::new(async move {
                match letters.await {
                    Ok(None) => ().into_any(),
                    Ok(Some(list)) => {
                        let reason = reason.get_untracked();
                        let href = format!(
                            "/admin/dead-letters?reason={}&page={{page}}",
                            encode_component(&reason),
                        );
                        let (pages, total, current) = (list.pages(), list.total, list.page);
                        if list.total == 0 {
                            return view! {
                                <p class="empty">"No dead letters of this reason are left."</p>
                            }
                                .into_any();
                        }
                        if list.items.is_empty() {
                            return view! { <PastTheEnd pages href/> }.into_any();
                        }
                        view! {
                            <LetterList reason letters=list.items replay error/>
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
fn GroupTable(groups: Vec<ReasonGroup>, current: Memo<String>) -> impl IntoView {
    view! {
        <table class="list stack" data-testid="dead-letter-groups">
            <thead>
                <tr>
                    <th>"Reason"</th>
                    <th class="num">"Messages"</th>
                    <th class="num">"Distinct"</th>
                    <th>"Last seen"</th>
                </tr>
            </thead>
            <tbody>
                {groups
                    .into_iter()
                    .map(|g| {
                        let href = format!("/admin/dead-letters?reason={}", encode_component(&g.reason));
                        let reason = g.reason.clone();
                        let selected = move || current.with(|c| *c == reason);
                        let label = reason_label(&g.reason);
                        view! {
                            <tr class:selected=selected>
                                <td>
                                    <A href=href>{label}</A>
                                    " "
                                    <code class="muted">{g.reason}</code>
                                </td>
                                <td class="num" data-label="Messages">{count(g.messages)}</td>
                                <td class="num" data-label="Distinct">{count(g.letters)}</td>
                                <td data-label="Last seen">{crate::time::minute_utc(&g.last_seen)}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn LetterList(
    reason: String,
    letters: Vec<DeadLetter>,
    replay: ServerAction<ReplayDeadLetters>,
    error: Signal<Option<AppError>>,
) -> impl IntoView {
    let pending = replay.pending();
    let title = format!("{} ({})", reason_label(&reason), reason);
    let all_reason = reason.clone();
    view! {
        <section class="card" data-testid="dead-letters">
            <div class="page-head">
                <h2>{title}</h2>
                <ActionForm action=replay>
                    <input type="hidden" name="reason" value=all_reason/>
                    <input type="hidden" name="scope" value="all"/>
                    <button type="submit" class="primary" disabled=move || pending.get()>
                        "Replay all of this reason"
                    </button>
                </ActionForm>
            </div>
            <ActionForm action=replay>
                <input type="hidden" name="reason" value=reason/>
                <input type="hidden" name="scope" value="selected"/>
                <ul class="letters">
                    {letters
                        .into_iter()
                        .map(|l| {
                            let id = l.id.to_string();
                            let label_id = format!("letter-{id}");
                            let times = if l.count == 1 {
                                "once".to_string()
                            } else {
                                format!("{} times", count(l.count))
                            };
                            view! {
                                <li>
                                    <div class="letter-head">
                                        <input type="checkbox" name="ids[]" value=id id=label_id.clone()/>
                                        <label for=label_id class="inline">
                                            {format!(
                                                "{} · {} · {} bytes",
                                                crate::time::minute_utc(&l.last_seen),
                                                times,
                                                count(l.bytes),
                                            )}
                                        </label>
                                    </div>
                                    <p class="muted">{l.detail}</p>
                                    <pre class="body">{l.body}</pre>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
                <FieldMessage error field="ids"/>
                <button type="submit" disabled=move || pending.get()>"Replay ticked"</button>
            </ActionForm>
        </section>
    }
}
