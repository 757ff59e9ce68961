//! The registry: users, role profiles and cards, the Smartcard Details table, new card records
//! and cancellation.

use crate::dates;
use crate::db::{AuditEvent, CardRecord, User};
use crate::error::{CmsError, CmsResult};
use crate::fields::parse_serial;
use crate::service::{Caller, Cms};
use crate::views::{smartcard_details, user_view};
use cms_api::protocol::{b64, CardCertificate, NewCardRequest, SmartcardDetails, UserCards};
use cms_api::RA_ACTIVITY;
use piv::ManagementAlgorithm;
use std::collections::hash_map::{Entry, HashMap};

/// The actor name of the admin CLI in the audit log.
pub const ADMIN: &str = "admin";

/// An audit event by the admin CLI.
pub(crate) fn admin_event<'a>(
    action: &'a str,
    card: Option<&'a str>,
    detail: String,
) -> AuditEvent<'a> {
    AuditEvent {
        actor: ADMIN,
        action,
        card_serial: card,
        detail,
    }
}

impl Cms {
    /// The Smartcard Details of `card`, naming its holder.
    pub fn card_view(&self, card: &CardRecord, now: i64) -> CmsResult<SmartcardDetails> {
        let holder = self
            .db
            .user(&card.holder_id)?
            .ok_or_else(|| CmsError::UnknownUser(card.holder_id.clone()))?;
        Ok(smartcard_details(card, &holder, now))
    }

    /// A registered card that is not cancelled.
    pub fn active_card(&self, serial: &str) -> CmsResult<CardRecord> {
        let card = self
            .db
            .card(serial)?
            .ok_or_else(|| CmsError::UnknownCard(serial.to_owned()))?;
        if let Some(at) = card.cancelled_on {
            return Err(CmsError::CardCancelled {
                serial: card.serial,
                cancelled_on: dates::iso_date(at),
            });
        }
        Ok(card)
    }

    /// Adds a user (admin); a new UUID unless `id` is given.
    pub fn add_user(&self, name: &str, id: Option<&str>) -> CmsResult<User> {
        let id = match id {
            Some(id) => uuid::Uuid::parse_str(id)
                .map_err(|_| CmsError::InvalidField(format!("{id:?} is not a UUID")))?,
            None => uuid::Uuid::new_v4(),
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(CmsError::InvalidField("a user needs a name".into()));
        }
        let user = User {
            id: id.to_string(),
            name: name.to_owned(),
        };
        self.db.add_user(
            &user,
            dates::now(),
            &admin_event("user.add", None, format!("{} ({})", user.name, user.id)),
        )?;
        Ok(user)
    }

    /// Adds a role profile to a user (admin) and returns its id.
    pub fn add_role_profile(
        &self,
        user_id: &str,
        organisation: &str,
        job_role: &str,
        activities: &[String],
    ) -> CmsResult<i64> {
        let user = self
            .db
            .user(user_id)?
            .ok_or_else(|| CmsError::UnknownUser(user_id.to_owned()))?;
        for code in activities {
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(CmsError::InvalidField(format!(
                    "{code:?} is not an activity code (such as B0267)"
                )));
            }
        }
        self.db.add_role_profile(
            &user.id,
            organisation,
            job_role,
            activities,
            dates::now(),
            &admin_event(
                "role.add",
                None,
                format!(
                    "{job_role} at {organisation} for {}: {}",
                    user.id,
                    activities.join(",")
                ),
            ),
        )
    }

    /// Registers a card for a user, whose management key the service gave in
    /// `management_algorithm`.
    pub fn register_card(
        &self,
        serial: &str,
        card_type: &str,
        user_id: &str,
        issued_on: i64,
        management_algorithm: ManagementAlgorithm,
        audit: &AuditEvent<'_>,
    ) -> CmsResult<CardRecord> {
        let serial = parse_serial(serial)?.to_string();
        let user = self
            .db
            .user(user_id)?
            .ok_or_else(|| CmsError::UnknownUser(user_id.to_owned()))?;
        let card_type = card_type.trim();
        if card_type.is_empty() || card_type.len() > 64 {
            return Err(CmsError::InvalidField(
                "a card type is 1 to 64 characters".into(),
            ));
        }
        let card = CardRecord {
            serial,
            card_type: card_type.to_owned(),
            holder_id: user.id,
            issued_on,
            certs_expire: None,
            cancelled_on: None,
            cancel_reason: None,
            capacity: self.policy.card_capacity,
            renewals_used: 0,
            puk_generation: 0,
            management_algorithm,
        };
        self.db.add_card(&card, issued_on, audit)?;
        Ok(card)
    }

    /// A new card record, by an RA.
    pub fn new_card(
        &self,
        caller: &Caller,
        request: &NewCardRequest,
    ) -> CmsResult<SmartcardDetails> {
        caller.require_activity(RA_ACTIVITY)?;
        let serial = parse_serial(&request.serial)?.to_string();
        let now = dates::now();
        let management_algorithm = match request.management_algorithm {
            None => ManagementAlgorithm::Aes128,
            Some(id) => ManagementAlgorithm::from_id(id).ok_or_else(|| {
                CmsError::InvalidField(format!(
                    "management_algorithm {id} is none of 3 (3DES), 8 (AES-128), 10 (AES-192) \
                     and 12 (AES-256)"
                ))
            })?,
        };
        let card = self.register_card(
            &serial,
            &request.card_type,
            &request.user_id,
            now,
            management_algorithm,
            &caller.audit(
                "card.add",
                Some(&serial),
                format!("for {}", request.user_id),
            ),
        )?;
        self.card_view(&card, now)
    }

    /// Every card (admin).
    pub fn all_cards(&self) -> CmsResult<Vec<SmartcardDetails>> {
        let now = dates::now();
        let mut holders: HashMap<String, User> = HashMap::new();
        let mut all = Vec::new();
        for card in self.db.cards(None)? {
            let holder = match holders.entry(card.holder_id.clone()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(unknown) => unknown.insert(
                    self.db
                        .user(&card.holder_id)?
                        .ok_or_else(|| CmsError::UnknownUser(card.holder_id.clone()))?,
                ),
            };
            all.push(smartcard_details(&card, holder, now));
        }
        Ok(all)
    }

    /// A user's cards, for the user themself or an RA.
    pub fn user_cards(&self, caller: &Caller, user_id: &str) -> CmsResult<UserCards> {
        let user = self.db.user(user_id)?;
        let allowed = caller.user.id == user_id || caller.acts_as(RA_ACTIVITY);
        if !allowed {
            return Err(CmsError::Forbidden(format!(
                "only the user or a Registration Authority ({RA_ACTIVITY}) can see another user's cards"
            )));
        }
        let user = user.ok_or_else(|| CmsError::UnknownUser(user_id.to_owned()))?;
        let now = dates::now();
        let cards = self.db.cards(Some(&user.id))?;
        Ok(UserCards {
            user: user_view(&user),
            cards: cards
                .iter()
                .map(|c| smartcard_details(c, &user, now))
                .collect(),
        })
    }

    /// The current certificate of an active card, for anyone: certificates are public.
    pub fn card_certificate(&self, serial: &str) -> CmsResult<CardCertificate> {
        let serial = parse_serial(serial)?.to_string();
        self.active_card(&serial)?;
        let certificate = self
            .db
            .active_certificate(&serial)?
            .ok_or_else(|| CmsError::NoActiveCertificate(serial.clone()))?;
        Ok(CardCertificate {
            serial,
            certificate: b64::encode(&certificate.der),
        })
    }

    /// One card's details, for its holder or an RA.
    pub fn card_details(&self, caller: &Caller, serial: &str) -> CmsResult<SmartcardDetails> {
        let serial = parse_serial(serial)?.to_string();
        if !caller.acts_as(RA_ACTIVITY) {
            let own = self
                .db
                .card(&serial)?
                .is_some_and(|c| c.holder_id == caller.user.id);
            if !own {
                return Err(CmsError::Forbidden(format!(
                    "only the card holder or a Registration Authority ({RA_ACTIVITY}) can see card {serial}"
                )));
            }
        }
        let card = self
            .db
            .card(&serial)?
            .ok_or_else(|| CmsError::UnknownCard(serial.clone()))?;
        self.card_view(&card, dates::now())
    }

    /// Cancels a card, by an RA: its sessions end and its open operations are aborted.
    pub fn cancel_card(
        &self,
        caller: &Caller,
        serial: &str,
        reason: &str,
    ) -> CmsResult<SmartcardDetails> {
        caller.require_activity(RA_ACTIVITY)?;
        let serial = parse_serial(serial)?.to_string();
        let reason = checked_reason(reason)?;
        self.active_card(&serial)?;
        self.db.cancel_card(
            &serial,
            reason,
            dates::now(),
            &caller.audit("card.cancel", Some(&serial), reason.to_owned()),
        )?;
        self.card_details_unchecked(&serial)
    }

    /// Cancels a card from the admin CLI.
    pub fn admin_cancel_card(&self, serial: &str, reason: &str) -> CmsResult<SmartcardDetails> {
        let serial = parse_serial(serial)?.to_string();
        let reason = checked_reason(reason)?;
        self.active_card(&serial)?;
        let event = admin_event("card.cancel", Some(&serial), reason.to_owned());
        self.db.cancel_card(&serial, reason, dates::now(), &event)?;
        self.card_details_unchecked(&serial)
    }

    fn card_details_unchecked(&self, serial: &str) -> CmsResult<SmartcardDetails> {
        let card = self
            .db
            .card(serial)?
            .ok_or_else(|| CmsError::UnknownCard(serial.to_owned()))?;
        self.card_view(&card, dates::now())
    }
}

fn checked_reason(reason: &str) -> CmsResult<&str> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 200 {
        return Err(CmsError::InvalidField(
            "a cancellation needs a reason of 1 to 200 characters".into(),
        ));
    }
    Ok(reason)
}
