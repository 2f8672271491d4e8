//! The Kafka 3.6 peer started in a container (feature `kafka36-container`, `KGROUP_KAFKA36_CONTAINER=1`).
//!
//! `integration/kafka36/docker-compose.yml` is the one place the broker is described: this module
//! reads its image, hostname, environment and published port at run time, so the container the
//! suite starts is the broker `docker compose up` starts, except for the host port. That port is
//! a free loopback port chosen per run (the compose file's 9092 may be taken), and the advertised
//! listener names it, because Kafka tells clients to reconnect to the advertised address.
//! Everything here is pure (no Docker), so it is tested on machines without an engine.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};

use super::KAFKA36_ENV;

/// The environment variable that asks the suite to start Kafka 3.6 itself (`1`).
pub const CONTAINER_ENV: &str = "KGROUP_KAFKA36_CONTAINER";

/// The cargo feature that compiles the container path.
pub const CONTAINER_FEATURE: &str = "kafka36-container";

/// The compose file describing the broker.
pub const COMPOSE_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../integration/kafka36/docker-compose.yml");

/// The only address the container's port is published on.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The one service of the compose file, as far as starting it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeService {
    /// `name:tag`.
    pub image: String,
    /// The controller quorum voters name the broker by it.
    pub hostname: String,
    /// In file order.
    pub environment: Vec<(String, String)>,
    /// The one `host_ip:host_port:container_port` entry of `ports`.
    pub port: PublishedPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPort {
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
}

impl ComposeService {
    /// Reads the compose file's one service. Only the shape the file has is understood (a map
    /// under `environment`, `"ip:host:container"` under `ports`); anything else is an error,
    /// so a change to the file cannot be half-read.
    pub fn parse(text: &str) -> Result<ComposeService, String> {
        let (mut image, mut hostname, mut port) = (None, None, None);
        let mut environment = Vec::new();
        // The block (environment or ports) the following lines belong to, and its key's indentation.
        let mut block: Option<(bool, usize)> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split(" #").next().unwrap_or_default().trim_end();
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let indent = line.len() - content.len();
            let at = |what: &str| format!("{COMPOSE_FILE} line {}: {what}", n + 1);
            if let Some((in_environment, key_indent)) = block {
                if indent > key_indent {
                    if in_environment {
                        let (key, value) = content
                            .split_once(':')
                            .filter(|(key, _)| key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                            .ok_or_else(|| at("environment must be a map of NAME: value"))?;
                        environment.push((key.to_owned(), unquote(value)));
                    } else {
                        let entry = content.strip_prefix('-').ok_or_else(|| at("ports must be a list"))?;
                        let parsed = parse_port(&unquote(entry)).ok_or_else(|| at("port not ip:host:container"))?;
                        if port.replace(parsed).is_some() {
                            return Err(at("more than one published port"));
                        }
                    }
                    continue;
                }
                block = None;
            }
            let Some((key, value)) = content.split_once(':') else { continue };
            let slot = match (key, value.trim()) {
                ("environment", "") => {
                    block = Some((true, indent));
                    continue;
                }
                ("ports", "") => {
                    block = Some((false, indent));
                    continue;
                }
                ("image", _) => &mut image,
                ("hostname", _) => &mut hostname,
                _ => continue,
            };
            if slot.replace(unquote(value)).is_some() {
                return Err(at("a second service (the suite starts one broker)"));
            }
        }
        let missing = |what: &str| format!("{COMPOSE_FILE}: no {what}");
        if environment.is_empty() {
            return Err(missing("environment"));
        }
        Ok(ComposeService {
            image: image.ok_or_else(|| missing("image"))?,
            hostname: hostname.ok_or_else(|| missing("hostname"))?,
            environment,
            port: port.ok_or_else(|| missing("published port"))?,
        })
    }

    /// The service as the suite starts it: published on `host_port` of loopback instead of the
    /// file's port, and advertising that address.
    pub fn on_host_port(&self, host_port: u16) -> Result<ContainerPlan, String> {
        if self.port.host_ip != HOST_IP {
            return Err(format!("{COMPOSE_FILE}: the port must be published on {HOST_IP} only"));
        }
        let (name, tag) = self.image.rsplit_once(':').ok_or_else(|| format!("image {} has no tag", self.image))?;
        let from = format!("PLAINTEXT://{HOST_IP}:{}", self.port.host_port);
        let mut advertised = false;
        let environment = self
            .environment
            .iter()
            .map(|(key, value)| {
                if key == "KAFKA_ADVERTISED_LISTENERS" && value.split(',').any(|l| l == from) {
                    advertised = true;
                    let to = format!("PLAINTEXT://{HOST_IP}:{host_port}");
                    return (
                        key.clone(),
                        value.split(',').map(|l| if l == from { &to } else { l }).collect::<Vec<_>>().join(","),
                    );
                }
                (key.clone(), value.clone())
            })
            .collect();
        if !advertised {
            return Err(format!("{COMPOSE_FILE}: KAFKA_ADVERTISED_LISTENERS does not advertise {from}"));
        }
        Ok(ContainerPlan {
            image_name: name.to_owned(),
            image_tag: tag.to_owned(),
            hostname: self.hostname.clone(),
            environment,
            port: PublishedPort { host_ip: HOST_IP, host_port, container_port: self.port.container_port },
        })
    }
}

/// What the container is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub image_name: String,
    pub image_tag: String,
    pub hostname: String,
    pub environment: Vec<(String, String)>,
    pub port: PublishedPort,
}

impl ContainerPlan {
    /// The compose file's broker on a free loopback port.
    pub fn from_compose_file() -> Result<ContainerPlan, String> {
        let text = std::fs::read_to_string(COMPOSE_FILE).map_err(|e| format!("{COMPOSE_FILE}: {e}"))?;
        let port = free_loopback_port().map_err(|e| format!("no free port on {HOST_IP}: {e}"))?;
        ComposeService::parse(&text)?.on_host_port(port)
    }

    /// The address the suite's clients use, equal to the advertised listener.
    pub fn bootstrap(&self) -> String {
        format!("{}:{}", self.port.host_ip, self.port.host_port)
    }
}

/// A port the kernel just had free on loopback. Another process may take it before the
/// container does; starting the container then fails with the address in use.
pub fn free_loopback_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((HOST_IP, 0))?.local_addr()?.port())
}

/// Whether the environment asks for the container: `KGROUP_KAFKA36_CONTAINER=1`. Any other
/// non-blank value, or naming a bootstrap address as well, is a mistake reported rather than
/// guessed at.
pub fn container_requested(env: &HashMap<String, String>) -> Result<bool, String> {
    match env.get(CONTAINER_ENV).map(|v| v.trim()).unwrap_or_default() {
        "" | "0" => Ok(false),
        "1" if env.get(KAFKA36_ENV).is_some_and(|v| !v.trim().is_empty()) => {
            Err(format!("{CONTAINER_ENV}=1 starts Kafka 3.6 itself: unset {KAFKA36_ENV}, or unset {CONTAINER_ENV}"))
        }
        "1" => Ok(true),
        other => Err(format!("{CONTAINER_ENV}={other}: use 1 to start Kafka 3.6 in a container")),
    }
}

/// Why the container cannot be started in a build without the feature.
pub fn feature_off_error() -> String {
    format!(
        "{CONTAINER_ENV}=1 needs the `{CONTAINER_FEATURE}` feature: \
         cargo test -p kgroup-protocol-tests --features {CONTAINER_FEATURE} --test conformance"
    )
}

/// Why the container cannot be started when the Docker engine does not answer.
pub fn no_engine_error(detail: &str) -> String {
    format!(
        "{CONTAINER_ENV}=1 but no Docker engine is reachable ({detail}); start one, point DOCKER_HOST \
         at it, or unset {CONTAINER_ENV}"
    )
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).to_owned()
}

fn parse_port(entry: &str) -> Option<PublishedPort> {
    let mut parts = entry.split(':');
    let port = PublishedPort {
        host_ip: parts.next()?.parse().ok()?,
        host_port: parts.next()?.parse().ok()?,
        container_port: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compose() -> ComposeService {
        ComposeService::parse(&std::fs::read_to_string(COMPOSE_FILE).unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn env(plan: &ContainerPlan, key: &str) -> String {
        let found: Vec<&String> = plan.environment.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
        assert_eq!(found.len(), 1, "{key} once in {:?}", plan.environment);
        found[0].clone()
    }

    #[test]
    fn the_container_is_the_compose_broker_on_a_chosen_loopback_port() {
        let service = compose();
        let plan = service.on_host_port(40123).unwrap();
        assert_eq!((plan.image_name.as_str(), plan.image_tag.as_str()), ("confluentinc/cp-kafka", "7.6.1"));
        assert_eq!(plan.hostname, "kafka36", "the controller quorum voters name it");
        assert_eq!(plan.port, PublishedPort { host_ip: HOST_IP, host_port: 40123, container_port: 9092 });
        assert_eq!(plan.bootstrap(), "127.0.0.1:40123");
        assert_eq!(env(&plan, "KAFKA_ADVERTISED_LISTENERS"), "PLAINTEXT://127.0.0.1:40123", "what clients reach");
        assert_eq!(env(&plan, "KAFKA_LISTENERS"), "PLAINTEXT://0.0.0.0:9092,CONTROLLER://kafka36:9093");
        assert_eq!(env(&plan, "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"), "0");
        assert_eq!(env(&plan, "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS"), "1000");
        assert_eq!(env(&plan, "KAFKA_AUTO_CREATE_TOPICS_ENABLE"), "false");
        assert_eq!(env(&plan, "CLUSTER_ID"), "4xEH6qNJTvOirCAoPre8WA", "comment dropped, quotes removed");
        // Every other setting is the file's, in the file's order.
        let rest = |e: &[(String, String)]| -> Vec<(String, String)> {
            e.iter().filter(|(k, _)| k != "KAFKA_ADVERTISED_LISTENERS").cloned().collect()
        };
        assert_eq!(rest(&plan.environment), rest(&service.environment));
        assert_eq!(service.environment.len(), 15);
    }

    #[test]
    fn compose_shapes_the_container_cannot_follow_are_errors() {
        let base = "services:\n  kafka:\n    image: a/b:1\n    hostname: h\n    ports:\n      - \"127.0.0.1:9092:9092\"\n    environment:\n      KAFKA_ADVERTISED_LISTENERS: \"PLAINTEXT://127.0.0.1:9092\"\n";
        assert!(ComposeService::parse(base).unwrap().on_host_port(1).is_ok());
        let list_env = base.replace("KAFKA_ADVERTISED_LISTENERS: \"", "- \"KAFKA_ADVERTISED_LISTENERS=");
        assert!(ComposeService::parse(&list_env).unwrap_err().contains("environment must be a map"));
        let all_interfaces = base.replace("\"127.0.0.1:9092:9092\"", "\"9092:9092\"");
        assert!(ComposeService::parse(&all_interfaces).unwrap_err().contains("ip:host:container"));
        let public = base.replace("\"127.0.0.1:9092:9092\"", "\"0.0.0.0:9092:9092\"");
        assert!(ComposeService::parse(&public).unwrap().on_host_port(1).unwrap_err().contains("127.0.0.1 only"));
        let other_listener = base.replace("PLAINTEXT://127.0.0.1:9092", "PLAINTEXT://kafka36:9092");
        assert!(ComposeService::parse(&other_listener).unwrap().on_host_port(1).unwrap_err().contains("advertise"));
        assert!(ComposeService::parse(&base.replace("    hostname: h\n", "")).unwrap_err().contains("no hostname"));
        let two = format!("{base}  other:\n    image: c/d:2\n");
        assert!(ComposeService::parse(&two).unwrap_err().contains("a second service"));
    }

    #[test]
    fn a_free_loopback_port_is_bindable() {
        let port = free_loopback_port().unwrap();
        assert_ne!(port, 0);
        drop(TcpListener::bind((HOST_IP, port)).unwrap());
    }

    #[test]
    fn the_container_is_asked_for_explicitly_and_alone() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(container_requested(&env(&[])), Ok(false));
        assert_eq!(container_requested(&env(&[(CONTAINER_ENV, "0")])), Ok(false));
        assert_eq!(container_requested(&env(&[(CONTAINER_ENV, "1"), (KAFKA36_ENV, " ")])), Ok(true));
        assert!(container_requested(&env(&[(CONTAINER_ENV, "yes")])).unwrap_err().contains("use 1"));
        let both = container_requested(&env(&[(CONTAINER_ENV, "1"), (KAFKA36_ENV, "127.0.0.1:9092")]));
        assert!(both.unwrap_err().contains(KAFKA36_ENV));
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(feature_off_error().contains("--features kafka36-container"));
        let no_engine = no_engine_error("Connection refused");
        assert!(no_engine.contains("no Docker engine is reachable (Connection refused)"), "{no_engine}");
        assert!(no_engine.contains("DOCKER_HOST"));
    }
}
