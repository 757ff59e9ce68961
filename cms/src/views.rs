//! The service's records as the API shows them: users, role profiles, a card as a row of the
//! Smartcard Details table, and a caller's session.

use crate::dates;
use crate::db::{CardRecord, RoleProfile, User};
use crate::service::Caller;
use cms_api::protocol::{RoleView, SessionView, SmartcardDetails, UserView};

/// A user as the API shows them.
pub fn user_view(user: &User) -> UserView {
    UserView {
        id: user.id.clone(),
        name: user.name.clone(),
    }
}

/// A role profile as the API shows it.
pub fn role_view(role: &RoleProfile) -> RoleView {
    RoleView {
        id: role.id,
        organisation: role.organisation.clone(),
        job_role: role.job_role.clone(),
        activities: role.activities.clone(),
    }
}

/// A card of `holder` as a row of the Smartcard Details table.
pub fn smartcard_details(card: &CardRecord, holder: &User, now: i64) -> SmartcardDetails {
    let cancelled = card.cancelled_on.is_some();
    SmartcardDetails {
        serial: card.serial.clone(),
        format: "Smartcard".into(),
        card_type: card.card_type.clone(),
        holder_id: card.holder_id.clone(),
        holder_name: Some(holder.name.clone()),
        issued_on: dates::iso_date(card.issued_on),
        certs_expire: card.certs_expire.map(dates::iso_date),
        cancelled_on: card.cancelled_on.map(dates::iso_date),
        status: if cancelled { "Cancelled" } else { "Active" }.into(),
        expired: card.is_expired(now),
        renewals_used: card.renewals_used,
        capacity: card.capacity,
        row: [
            card.serial.clone(),
            "Smartcard".into(),
            card.card_type.clone(),
            dates::display_date(card.issued_on),
            card.certs_expire
                .map(dates::display_date)
                .unwrap_or_default(),
            card.cancelled_on
                .map(dates::display_date)
                .unwrap_or_else(|| "Active".into()),
        ],
    }
}

/// The caller's session as the API shows it.
pub fn session_view(caller: &Caller) -> SessionView {
    SessionView {
        user: user_view(&caller.user),
        card_serial: caller.session.card_serial.clone(),
        roles: caller.roles.iter().map(role_view).collect(),
        selected_role: caller.session.selected_role,
        expires_at: caller.session.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use piv::ManagementAlgorithm;

    #[test]
    fn details_read_like_the_registers_table() {
        let card = CardRecord {
            serial: "4082C10C1A222820".into(),
            card_type: "Gemplus".into(),
            holder_id: "u".into(),
            issued_on: 1_511_222_400,
            certs_expire: Some(1_574_294_400),
            cancelled_on: None,
            cancel_reason: None,
            capacity: 10,
            renewals_used: 0,
            puk_generation: 0,
            management_algorithm: ManagementAlgorithm::Aes128,
        };
        let jane = User {
            id: "u".into(),
            name: "Jane Doe".into(),
        };
        let d = smartcard_details(&card, &jane, 1_511_222_400);
        assert_eq!(
            d.row,
            [
                "4082C10C1A222820",
                "Smartcard",
                "Gemplus",
                "21-Nov-2017",
                "21-Nov-2019",
                "Active"
            ]
        );
        assert_eq!(d.status, "Active");
        assert!(!d.expired);
        assert_eq!(d.holder_id, "u");
        assert_eq!(d.holder_name.as_deref(), Some("Jane Doe"));
        assert!(smartcard_details(&card, &jane, 1_574_294_400).expired);
    }
}
