//! The fixture of the API tests: a service in a temporary directory, served over HTTPS on an
//! ephemeral port, with users, role profiles and cards whose keys are software keys.

#![allow(dead_code)]

use cms::server::{self, RunningServer};
use cms::{dates, Cms, DataDir, Policy};
use cms_api::client::CmsClient;
use cms_api::protocol::SessionCreated;
use p256::ecdsa::signature::Signer;
use spki::EncodePublicKey;
use std::sync::Arc;

/// A nurse's role profile: organisation, job role, activities.
pub const NURSE: (&str, &str, &[&str]) = ("Leeds Teaching Hospitals", "Staff Nurse", &["B0360"]);
/// A Registration Authority officer's role profile, with the card-repair activity B0267.
pub const RA: (&str, &str, &[&str]) = ("Leeds Teaching Hospitals", "RAA ID Checker", &["B0267"]);
/// The serial of the first test card.
pub const SERIAL_A: &str = "4082A001132F2817";
/// The serial of the second test card.
pub const SERIAL_B: &str = "5124000004254900";
/// The agent version the tests' operations report.
pub const AGENT: &str = "0.1.0";

/// The management key the service derived for card `serial`: what the card holds, to play the
/// card's half of the relayed 9B exchange.
pub fn card_key(fx: &Fixture, serial: &str) -> piv::ManagementKey {
    fx.cms.card_management_key(serial).unwrap()
}

/// A card whose 9A key is a software key.
pub struct SoftCard {
    pub serial: String,
    pub key: SoftKey,
    pub certificate: Vec<u8>,
}

/// A software key standing in for a card key.
#[derive(Clone)]
pub enum SoftKey {
    P256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

impl SoftKey {
    pub fn p256() -> Self {
        SoftKey::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }

    pub fn rsa() -> Self {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        SoftKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(private)))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            SoftKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature = k.sign(message);
                sig.to_bytes().to_vec()
            }
            SoftKey::Rsa(k) => {
                use rsa::signature::SignatureEncoding;
                k.sign(message).to_vec()
            }
        }
    }

    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            SoftKey::P256(k) => k.verifying_key().to_public_key_der().unwrap().into_vec(),
            SoftKey::Rsa(k) => {
                use rsa::signature::Keypair;
                k.verifying_key().to_public_key_der().unwrap().into_vec()
            }
        }
    }

    pub fn public_key(&self) -> piv::PublicKey {
        piv::PublicKey::from_spki_der(&self.spki_der()).unwrap()
    }
}

/// A running service and a client of it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cms: Arc<Cms>,
    pub server: Option<RunningServer>,
    pub client: CmsClient,
    policy: Policy,
}

impl Fixture {
    pub async fn start() -> Self {
        Self::with_policy(Policy::default()).await
    }

    pub async fn with_policy(policy: Policy) -> Self {
        Self::serving(policy, None).await
    }

    /// A service with the web portal on, its pages pointed at an agent bridge at `agent_url`.
    pub async fn with_portal(agent_url: &str) -> Self {
        let portal = cms::portal::PortalConfig::new(agent_url).unwrap();
        Self::serving(Policy::default(), Some(portal)).await
    }

    /// A new service with `policy`, and the portal when `portal` is given.
    async fn serving(policy: Policy, portal: Option<cms::portal::PortalConfig>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cms = Arc::new(Cms::init(&DataDir::new(dir.path()), &[], policy.clone()).unwrap());
        let addr = "127.0.0.1:0".parse().unwrap();
        let server = match portal {
            Some(portal) => server::start_with_portal(cms.clone(), addr, portal).await,
            None => server::start(cms.clone(), addr).await,
        }
        .unwrap();
        let client = CmsClient::new(&server.url(), cms.ca().certificate_pem()).unwrap();
        Self {
            dir,
            cms,
            server: Some(server),
            client,
            policy,
        }
    }

    /// Stops the server, closes the service and opens both again from the same directory.
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        let data_dir = DataDir::new(self.dir.path());
        self.cms = Arc::new(Cms::open(&data_dir, self.policy.clone()).unwrap());
        let server = server::start(self.cms.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        self.client = CmsClient::new(&server.url(), self.cms.ca().certificate_pem()).unwrap();
        self.server = Some(server);
    }

    /// A user with role profiles `(organisation, job role, activities)`; returns the user id
    /// and the profile ids.
    pub fn user(&self, name: &str, roles: &[(&str, &str, &[&str])]) -> (String, Vec<i64>) {
        let user = self.cms.add_user(name, None).unwrap();
        let ids = roles
            .iter()
            .map(|(org, job, acts)| {
                let acts: Vec<String> = acts.iter().map(|a| a.to_string()).collect();
                self.cms
                    .add_role_profile(&user.id, org, job, &acts)
                    .unwrap()
            })
            .collect();
        (user.id, ids)
    }

    /// A card for `user_id` with a software key, valid for `days` (negative: expired).
    pub fn card_with_key(&self, user_id: &str, serial: &str, days: i64, key: SoftKey) -> SoftCard {
        let now = dates::now();
        let event = cms::db::AuditEvent {
            actor: "admin",
            action: "card.issue",
            card_serial: Some(serial),
            detail: String::new(),
        };
        self.cms
            .register_card(
                serial,
                "Gemalto",
                user_id,
                now - 2 * dates::DAY,
                piv::ManagementAlgorithm::Aes192,
                &event,
            )
            .unwrap();
        let not_after = now + days * dates::DAY;
        let record = self
            .cms
            .certify_card(
                serial,
                &key.spki_der(),
                not_after.min(now) - dates::DAY,
                not_after,
            )
            .unwrap();
        SoftCard {
            serial: serial.to_owned(),
            key,
            certificate: record.der,
        }
    }

    pub fn card(&self, user_id: &str, serial: &str, days: i64) -> SoftCard {
        self.card_with_key(user_id, serial, days, SoftKey::p256())
    }

    /// Authenticates `card` and returns the session and a client carrying it.
    pub async fn login(&self, card: &SoftCard) -> (SessionCreated, CmsClient) {
        self.try_login(card).await.unwrap()
    }

    /// Tries to authenticate with `card`.
    pub async fn try_login(
        &self,
        card: &SoftCard,
    ) -> Result<(SessionCreated, CmsClient), cms_api::client::ClientError> {
        self.client
            .authenticate(&card.serial, &card.certificate, |m| {
                Ok::<_, std::convert::Infallible>(card.key.sign(m))
            })
            .await
    }

    /// Logs in with `card` and expects the card's certificate to be refused with `code`.
    pub async fn login_refused(&self, card: &SoftCard, code: cms_api::ErrorCode) {
        let result = self.try_login(card).await;
        assert_eq!(result.unwrap_err().code(), Some(code));
    }

    /// Jane Doe, a nurse, with card `serial` whose certificate expires in `days` days, logged
    /// in with it: her user id, the card and a client carrying her session.
    pub async fn jane_logged_in(&self, serial: &str, days: i64) -> (String, SoftCard, CmsClient) {
        let (jane, _) = self.user("Jane Doe", &[NURSE]);
        let card = self.card(&jane, serial, days);
        let (_, client) = self.login(&card).await;
        (jane, card, client)
    }

    /// How many audit entries there are: every change writes one.
    pub fn audit_len(&self) -> usize {
        self.cms
            .database()
            .audit_log(None, 1_000_000)
            .unwrap()
            .len()
    }
}

/// Asserts that `result` is an API error with `code` and `status`, and returns its message.
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, cms_api::client::ClientError>,
    status: u16,
    code: cms_api::ErrorCode,
) -> String {
    match result {
        Err(cms_api::client::ClientError::Api {
            status: s,
            code: c,
            message,
            ..
        }) if s == status && c == code => {
            assert!(!message.is_empty());
            message
        }
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

/// Plays the card's side of the relayed 9B exchange for `serial`, with the key the card holds.
pub async fn relay_as_card(client: &CmsClient, op_id: &str, card_key: &piv::ManagementKey) {
    let witness = vec![0x5Au8; card_key.block_len()];
    let encrypted = card_key.encrypt_block(&witness).unwrap();
    let answer = client
        .relay_witness(op_id, card_key.algorithm(), &encrypted)
        .await
        .unwrap();
    assert_eq!(
        cms_api::protocol::b64::decode(&answer.decrypted_witness).unwrap(),
        witness
    );
    let challenge = cms_api::protocol::b64::decode(&answer.challenge).unwrap();
    let response = card_key.encrypt_block(&challenge).unwrap();
    assert!(
        client
            .relay_response(op_id, &response)
            .await
            .unwrap()
            .authenticated
    );
}

/// Starts an operation of `kind` on card `serial` as agent version [`AGENT`].
pub async fn start(
    client: &CmsClient,
    kind: cms_api::OperationKind,
    serial: &str,
) -> cms_api::protocol::OperationView {
    client
        .start_operation(kind, serial, AGENT)
        .await
        .unwrap()
        .operation
}

/// Has a certificate issued in operation `op_id` for `key` and confirms it with `key`'s
/// signature; returns the confirmed operation.
pub async fn issue_and_confirm(
    client: &CmsClient,
    op_id: &str,
    key: &SoftKey,
) -> cms_api::protocol::OperationView {
    let issued = client.submit_csr(op_id, &csr(key)).await.unwrap();
    client
        .confirm(op_id, &confirmation(key, &issued))
        .await
        .unwrap()
}

/// A certificate request for `key`, signed by it.
pub fn csr(key: &SoftKey) -> Vec<u8> {
    piv::csr::build_request(&key.public_key(), "CN=renewal", |info| Ok(key.sign(info))).unwrap()
}

/// The new key's signature confirming `op`.
pub fn confirmation(key: &SoftKey, op: &cms_api::protocol::OperationView) -> Vec<u8> {
    let challenge =
        cms_api::protocol::b64::decode_url(op.confirm_challenge.as_deref().unwrap()).unwrap();
    key.sign(&cms_api::protocol::confirm_message(&op.id, &challenge))
}
