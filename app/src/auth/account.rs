//! The signed-in user's own account: who they are, and changing their password.

use leptos::prelude::*;

use super::{use_auth, ChangePassword, Gate};
use crate::ui::{FieldMessage, FormMessage};

#[component]
pub fn MyAccountPage() -> impl IntoView {
    view! {
        <Gate>
            <MyAccount/>
        </Gate>
    }
}

#[component]
fn MyAccount() -> impl IntoView {
    let auth = use_auth();
    let change = ServerAction::<ChangePassword>::new();
    let error = Signal::derive(move || change.value().get().and_then(Result::err));
    let pending = change.pending();
    // Each change that succeeds empties the form.
    let changes = Memo::new(move |previous: Option<&u32>| {
        let previous = previous.copied().unwrap_or(0);
        match change.value().get() {
            Some(Ok(())) => previous + 1,
            _ => previous,
        }
    });
    let changed = move || matches!(change.value().get(), Some(Ok(())));
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if changes.get() != 0 {
            if let Some(form) = form.get() {
                form.reset();
            }
        }
    });
    view! {
        <div class="page-head">
            <h1>"Your account"</h1>
        </div>
        <Transition>
            {move || Suspend::new(async move {
                auth.user.await.ok().flatten().map(|user| {
                    view! {
                        <section class="card">
                            <dl class="facts">
                                <dt>"Name"</dt>
                                <dd>{user.display_name}</dd>
                                <dt>"Username"</dt>
                                <dd data-testid="my-username">{user.username}</dd>
                                <dt>"Role"</dt>
                                <dd>{user.role.as_str()}</dd>
                            </dl>
                        </section>
                    }
                })
            })}
        </Transition>
        <section class="card">
            <h2>"Change password"</h2>
            <Show when=changed>
                <p class="notice" role="status">
                    "Password changed. You stay signed in here; your other sessions have ended."
                </p>
            </Show>
            <ActionForm action=change node_ref=form>
                <label for="current">"Current password"</label>
                <input id="current" name="current" type="password" autocomplete="current-password"/>
                <FieldMessage error field="current"/>
                <label for="new">"New password"</label>
                <input id="new" name="new" type="password" autocomplete="new-password"/>
                <p class="hint">"8 to 128 characters."</p>
                <FieldMessage error field="new"/>
                <label for="confirm">"New password again"</label>
                <input id="confirm" name="confirm" type="password" autocomplete="new-password"/>
                <FieldMessage error field="confirm"/>
                <FormMessage error/>
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Changing…" } else { "Change password" }}
                </button>
            </ActionForm>
        </section>
    }
}
