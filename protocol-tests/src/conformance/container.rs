//! Starts the Kafka 3.6 peer through testcontainers (feature `kafka36-container`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kgroup::driver::connection::{Connection, ConnectionConfig};
use testcontainers::bollard::models::PortBinding;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::kafka36::{no_engine_error, ContainerPlan};

/// Bound on pulling the image (about 1 GB the first time).
const PULL_BOUND: Duration = Duration::from_secs(600);
/// Bound on creating and starting the container, once pulled.
const START_BOUND: Duration = Duration::from_secs(60);
/// Bound on the broker answering ApiVersions after the container started.
const READY_BOUND: Duration = Duration::from_secs(120);
/// Bound on the engine answering a ping.
const PING_BOUND: Duration = Duration::from_secs(10);

/// A running Kafka 3.6 container. Dropping it removes the container (testcontainers' drop
/// guard), so keep it alive until the suite has finished, passed or failed.
pub struct Kafka36Container {
    bootstrap: String,
    _container: ContainerAsync<GenericImage>,
}

impl Kafka36Container {
    /// The compose file's broker on a free loopback port.
    pub async fn from_compose_file() -> Result<Kafka36Container, String> {
        let plan = ContainerPlan::from_compose_file()?;
        println!("starting {}:{} on {} through testcontainers", plan.image_name, plan.image_tag, plan.bootstrap());
        Kafka36Container::start(&plan).await
    }

    /// Starts the broker `plan` describes and waits until it answers ApiVersions on
    /// [`ContainerPlan::bootstrap`]. Needs a multi-threaded Tokio runtime (the drop guard blocks
    /// in place).
    pub async fn start(plan: &ContainerPlan) -> Result<Kafka36Container, String> {
        ping_engine().await?;
        let image = format!("{}:{}", plan.image_name, plan.image_tag);
        let mut request = GenericImage::new(&plan.image_name, &plan.image_tag)
            .with_hostname(&plan.hostname)
            .with_mapped_port(plan.port.host_port, ContainerPort::Tcp(plan.port.container_port))
            .with_startup_timeout(START_BOUND);
        for (key, value) in &plan.environment {
            request = request.with_env_var(key, value);
        }
        // testcontainers publishes mapped ports on every interface; the suite's broker is for
        // this machine only.
        let host_ip = plan.port.host_ip.to_string();
        let request = request.with_host_config_modifier(move |host_config| {
            for binding in host_config.port_bindings.iter_mut().flat_map(|map| map.values_mut()).flatten().flatten() {
                *binding = PortBinding { host_ip: Some(host_ip.clone()), host_port: binding.host_port.take() };
            }
        });
        let request = tokio::time::timeout(PULL_BOUND, request.pull_image())
            .await
            .map_err(|_| format!("pulling {image} took longer than {PULL_BOUND:?}"))?
            .map_err(|e| format!("pulling {image}: {e}"))?;
        let container = request.start().await.map_err(|e| format!("starting {image}: {e}"))?;
        let started = Kafka36Container { bootstrap: plan.bootstrap(), _container: container };
        started.wait_ready().await?;
        Ok(started)
    }

    /// The advertised address, for `PeerKind::Kafka36`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker accepts requests once it is unfenced in KRaft; a connection's ApiVersions
    /// handshake is the first request the suite depends on.
    async fn wait_ready(&self) -> Result<(), String> {
        let config = Arc::new(ConnectionConfig { connect_timeout: Duration::from_secs(5), ..Default::default() });
        let deadline = Instant::now() + READY_BOUND;
        loop {
            let attempt =
                tokio::time::timeout(Duration::from_secs(10), Connection::open(&self.bootstrap, config.clone()));
            let error = match attempt.await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "ApiVersions timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                return Err(format!("Kafka 3.6 at {} not ready after {READY_BOUND:?}: {error}", self.bootstrap));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Fails with [`no_engine_error`] unless the engine testcontainers is configured for answers.
async fn ping_engine() -> Result<(), String> {
    let docker =
        testcontainers::core::client::docker_client_instance().await.map_err(|e| no_engine_error(&e.to_string()))?;
    match tokio::time::timeout(PING_BOUND, docker.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(no_engine_error(&e.to_string())),
        Err(_) => Err(no_engine_error(&format!("no answer to a ping within {PING_BOUND:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever engine this machine has (none on the project's build machines): either it
    /// answers, or the error says no engine is reachable rather than something obscure.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_unreachable_engine_is_reported_as_such() {
        if let Err(error) = ping_engine().await {
            assert!(error.contains("no Docker engine is reachable"), "{error}");
        }
    }
}
