//! The socket API's calls as the owner answers them: each one either answered from the owner's
//! state at once, or handed to a task whose report (or reply) comes later. The server answers
//! `hello` and `subscribe` itself.

use super::{json, Aftermath, ReplyTo, SessionOwner, TaskReport};
use crate::audit::AuditEvent;
use crate::ipc::AgentCall;
use crate::session::login::SignedIn;
use agent_ipc::{
    Call, CardDetails, ErrorCode, ErrorObject, Event, Role, Roles, SessionEndReason, Ticket,
};
use cms_api::protocol::{RoleView, SessionView, SmartcardDetails};

impl SessionOwner {
    /// Answers a socket call, at once or through a task that replies later.
    pub(super) fn on_call(&mut self, AgentCall { call, reply }: AgentCall) {
        tracing::debug!(method = call.method(), "call");
        let answer = match call {
            Call::Login(params) => return self.call_login(params.reader, reply),
            Call::SelectRole(params) => return self.call_select_role(params, reply),
            Call::Status => Ok(json(&self.snapshot())),
            Call::Readers => Ok(json(&self.snapshot().readers)),
            Call::Logout => self.call_logout(),
            Call::Roles => self.signed_in().map(|s| {
                json(&Roles {
                    roles: s.session.roles.iter().map(role).collect(),
                    selected: s.session.selected_role.map(|r| r.to_string()),
                    default: self
                        .roles
                        .default_for(&s.session.user.id)
                        .map(|r| r.to_string()),
                })
            }),
            Call::Ticket => self.signed_in().map(|s| {
                json(&Ticket {
                    ticket: s.ticket.to_string(),
                    expires_at: s.session.expires_at,
                })
            }),
            Call::Renew => return self.call_renew(reply),
            Call::Repair(params) => return self.call_repair(params, reply),
            Call::CancelOperation(params) => self.call_cancel_operation(&params.operation),
            Call::CardDetails(params) => return self.call_card_details(params.reader, reply),
            Call::CancelCard(params) => return self.call_cancel_card(params, reply),
            Call::Doctor(params) => return self.call_doctor(params, reply),
            Call::Hello(_) | Call::Subscribe => Err(ErrorObject::new(
                ErrorCode::BadRequest,
                format!("{} is answered by the socket server", call.method()),
            )),
        };
        let _ = reply.send(answer);
    }

    /// The session's sign-in, or `no_session`.
    pub(super) fn signed_in(&self) -> Result<&SignedIn, ErrorObject> {
        self.session
            .as_ref()
            .map(|s| &s.signed_in)
            .ok_or_else(|| ErrorObject::new(ErrorCode::NoSession, "nobody is signed in"))
    }

    /// `logout`: ends the session, or cancels a sign-in that is running.
    pub(super) fn call_logout(&mut self) -> Result<serde_json::Value, ErrorObject> {
        if self.session.is_some() {
            self.end_session(SessionEndReason::Logout);
        } else if self.login.is_some() {
            self.cancel_login(ErrorObject::new(
                ErrorCode::PinCancelled,
                "the sign-in was cancelled by logout",
            ));
        } else {
            return Err(ErrorObject::new(
                ErrorCode::NoSession,
                "nobody is signed in",
            ));
        }
        Ok(json(&self.session_status()))
    }

    /// `select_role`: asks the service to select one of the session's roles, in a task.
    pub(super) fn call_select_role(&mut self, params: agent_ipc::SelectRoleParams, reply: ReplyTo) {
        let found = self.signed_in().and_then(|s| {
            params
                .role
                .parse::<i64>()
                .ok()
                .filter(|id| s.session.roles.iter().any(|r| r.id == *id))
                .map(|id| (id, s.client.clone()))
                .ok_or_else(|| {
                    ErrorObject::new(
                        ErrorCode::UnknownRole,
                        format!("you hold no role with id {:?}", params.role),
                    )
                })
        });
        let (id, client) = match found {
            Ok(found) => found,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let generation = self.session.as_ref().map_or(0, |s| s.generation);
        let reports = self.reports_tx.clone();
        let remember = params.remember;
        tokio::spawn(async move {
            let result = client
                .select_role(id)
                .await
                .map_err(|e| crate::cms::error_object(&e));
            let _ = reports.send(TaskReport::RoleSelected {
                generation,
                remember,
                result,
                reply,
            });
        });
    }

    /// The service's answer to a role selection for the session of `generation`: the role is
    /// remembered as the user's default when asked, audited and announced; a session the service
    /// no longer knows ends.
    pub(super) fn on_role_selected(
        &mut self,
        generation: u64,
        remember: bool,
        result: Result<SessionView, ErrorObject>,
        reply: ReplyTo,
    ) {
        let Some(session) = self.session.as_mut().filter(|s| s.generation == generation) else {
            let _ = reply.send(Err(ErrorObject::new(
                ErrorCode::NoSession,
                "the session ended before the role was selected",
            )));
            return;
        };
        let view = match result {
            Ok(view) => view,
            Err(e) => {
                if e.code == ErrorCode::NoSession {
                    self.end_session(SessionEndReason::CmsSessionExpired);
                }
                let _ = reply.send(Err(e));
                return;
            }
        };
        let s = &mut session.signed_in;
        s.session = view;
        let selected = s
            .session
            .selected_role
            .and_then(|id| s.session.roles.iter().find(|r| r.id == id));
        if let Some(selected) = selected {
            if remember {
                self.roles.remember(&s.session.user.id, selected.id);
            }
            // (The field, not `record`: the session is borrowed.)
            self.aftermath
                .push(Aftermath::Audit(AuditEvent::RoleChanged {
                    serial: s.serial.to_string(),
                    role: selected.id.to_string(),
                }));
            self.pending.push(Event::RoleChanged {
                role: role(selected),
            });
        }
        let _ = reply.send(Ok(json(&self.session_status())));
    }

    /// `card_details`: the service's Smartcard Details of the card in `reader` (else a holder's
    /// card in a second reader, else the session's own).
    pub(super) fn call_card_details(&mut self, reader: Option<String>, reply: ReplyTo) {
        let found = self
            .signed_in()
            .map(|s| s.client.clone())
            .and_then(|client| {
                let reader = match reader {
                    Some(reader) => reader,
                    None => self
                        .holder_reader(None)
                        .or_else(|_| self.signed_in().map(|s| s.reader.clone()))?,
                };
                Ok((client, self.serial_in(&reader)?))
            });
        match found {
            Ok((client, serial)) => {
                tokio::spawn(async move {
                    let _ = reply.send(details_answer(client.card(&serial.to_string()).await));
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// `cancel_card`: cancels a card at the service, for an officer holding the RA activity.
    pub(super) fn call_cancel_card(&mut self, params: agent_ipc::CancelCardParams, reply: ReplyTo) {
        match self.officer() {
            Ok(client) => {
                tokio::spawn(async move {
                    let cancelled = client.cancel_card(&params.serial, &params.reason).await;
                    let _ = reply.send(details_answer(cancelled));
                });
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// Smartcard Details in the socket API's shape, or the service's refusal in its words.
fn details_answer(
    answer: Result<SmartcardDetails, cms_api::client::ClientError>,
) -> Result<serde_json::Value, ErrorObject> {
    let details = answer.map_err(|e| crate::cms::error_object(&e))?;
    Ok(json(&CardDetails {
        serial: details.serial,
        card_type: details.card_type,
        holder_id: details.holder_id,
        holder_name: details.holder_name,
        issued_on: details.issued_on,
        certs_expire: details.certs_expire,
        cancelled_on: details.cancelled_on,
        status: details.status,
        expired: details.expired,
        renewals_used: details.renewals_used,
        capacity: details.capacity,
    }))
}

/// A role as the socket API shows it.
pub(super) fn role(view: &RoleView) -> Role {
    Role {
        id: view.id.to_string(),
        organisation: view.organisation.clone(),
        job_role: view.job_role.clone(),
        activities: view.activities.clone(),
    }
}
