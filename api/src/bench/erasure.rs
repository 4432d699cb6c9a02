//! `custodia bench erasure`: does erasing a data subject cost more when
//! they have a long history? Each subject signs in and refreshes their
//! session until their history reaches the size; then the erasure (event,
//! sessions ended, access paused, key destroyed) is timed.

use std::process::ExitCode;
use std::time::Instant;

use custodia_application::commands::privacy::erase_subject;
use custodia_application::commands::sessions::{refresh_session, start_session};
use custodia_application::commands::users::{register_user, NewUser, Profile};
use custodia_domain::{ChainId, Timestamp};
use custodia_infrastructure::passwords::Argon2Cost;
use uuid::Uuid;

use super::{operator, percentiles};

const PASSWORD: &str = "a benchmark passphrase of some length";

#[derive(clap::Args)]
pub struct ErasureArgs {
    /// The subjects' history sizes (events about them) to sample at.
    #[arg(long, value_delimiter = ',', default_value = "10,100000")]
    sizes: Vec<u64>,
    /// Subjects erased at each size (at most one for sizes above 10,000,
    /// whose histories take minutes to write).
    #[arg(long, default_value_t = 20)]
    subjects: usize,
}

pub async fn run(url: &str, args: ErasureArgs) -> Result<ExitCode, String> {
    let ports = super::ports(url, 4, Argon2Cost { m_kib: 64, t: 1 }).await?;
    println!("erasure benchmark: each subject's history is one sign-in and its refreshes");
    for &size in &args.sizes {
        let subjects = if size > 10_000 {
            1
        } else {
            args.subjects.max(1)
        };
        let tenant = super::tenant(&ports, "owner@bench.example", Some(PASSWORD)).await?;
        let mut latencies = Vec::with_capacity(subjects);
        let mut history = 0;
        for n in 0..subjects {
            let user = Uuid::now_v7();
            let email = format!("subject{n}@bench.example");
            let before = chain_length(&ports, tenant).await?;
            let subject = NewUser {
                address_vouched: false,
                user,
                email: email.clone(),
                profile: Profile {
                    display_name: Some("Subject".into()),
                    ..Profile::default()
                },
                invited: false,
                password: Some(PASSWORD.into()),
            };
            register_user(&ports, &operator(), tenant, subject)
                .await
                .map_err(|e| e.to_string())?;
            let at = Timestamp::now;
            let mut tokens = start_session(&ports, tenant, &email, PASSWORD, None, None, at())
                .await
                .map_err(|e| e.to_string())?;
            // Every event since `before` is about the subject.
            let written = chain_length(&ports, tenant).await? - before;
            for _ in written..size {
                tokens = refresh_session(&ports, Some(tenant), &tokens.refresh_token, at())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            history = chain_length(&ports, tenant).await? - before;
            let started = Instant::now();
            erase_subject(&ports, &operator(), tenant, user, "bench")
                .await
                .map_err(|e| e.to_string())?;
            latencies.push(started.elapsed());
        }
        percentiles(
            &format!("erase a subject with {history:>6} events ({subjects} subjects)"),
            latencies,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn chain_length(
    ports: &custodia_application::commands::Ports,
    tenant: custodia_domain::TenantId,
) -> Result<u64, String> {
    let chains = ports.store.chains().await.map_err(|e| e.to_string())?;
    Ok(chains
        .iter()
        .find(|c| c.chain == ChainId::Tenant(tenant))
        .map_or(0, |c| c.events))
}
