//! Keys of the Java consumer (ConsumerConfig, CommonClientConfigs and the SSL and SASL configs
//! of kafka-clients) and of librdkafka that are not kgroup's own, and what kgroup does with
//! each, so that a configuration copied from either client loads.

/// What a key of another client does in a kgroup configuration.
pub(super) enum Handling {
    /// Another name of one of kgroup's keys, applied as that key.
    Alias(&'static str),
    /// Accepted with a warning: kgroup has no use for it (serializers, statistics, socket
    /// tuning, producer settings of a shared file).
    Unused,
    /// Accepted with a warning when the value is one of these, which is what kgroup does
    /// anyway; any other value asks for something kgroup cannot do, the reason says what.
    Only(&'static [&'static str], &'static str),
    /// Refused whatever the value: going on without it would behave differently (trust,
    /// credentials), the reason says what to set instead.
    Rejected(&'static str),
}

use Handling::{Alias, Only, Rejected, Unused};

const PEM_CA: &str = "kgroup reads CA certificates from a PEM file: set ssl.ca.location";
const PEM_IDENTITY: &str =
    "kgroup reads the client certificate and key from PEM files: set ssl.certificate.location and ssl.key.location";
const ENCRYPTED_KEY: &str = "encrypted private keys are not supported: give ssl.key.location an unencrypted PEM key";
const ALWAYS_VERIFIED: &str = "kgroup always verifies broker certificates \
     (ssl.endpoint.identification.algorithm=none skips only the host name check)";
const NO_AUTO_CREATE: &str = "kgroup never asks brokers to create topics: create them beforehand";

/// Keys ending in `.` stand for every key with that prefix (settings of SASL mechanisms kgroup
/// does not implement, which `sasl.mechanism` refuses anyway).
const KEYS: &[(&str, Handling)] = &[
    // Both clients.
    ("allow.auto.create.topics", Only(&["false"], NO_AUTO_CREATE)),
    ("check.crcs", Unused),
    ("client.dns.lookup", Unused),
    ("connections.max.idle.ms", Unused),
    ("enable.metrics.push", Unused),
    ("metadata.recovery.rebootstrap.trigger.ms", Unused),
    ("metadata.recovery.strategy", Unused),
    ("reconnect.backoff.max.ms", Unused),
    ("reconnect.backoff.ms", Unused),
    ("sasl.kerberos.", Unused),
    ("sasl.login.", Unused),
    ("sasl.oauthbearer.", Unused),
    ("socket.connection.setup.timeout.ms", Unused),
    ("ssl.cipher.suites", Unused),
    ("ssl.keystore.location", Rejected(PEM_IDENTITY)),
    ("ssl.keystore.password", Rejected(PEM_IDENTITY)),
    // The Java consumer.
    ("auto.include.jmx.reporter", Unused),
    ("bootstrap.resolve.timeout.ms", Unused),
    ("interceptor.classes", Unused),
    ("internal.leave.group.on.close", Unused),
    ("internal.throw.on.fetch.stable.offset.unsupported", Unused),
    ("key.deserializer", Unused),
    ("metric.reporters", Unused),
    ("metrics.num.samples", Unused),
    ("metrics.recording.level", Unused),
    ("metrics.sample.window.ms", Unused),
    ("receive.buffer.bytes", Unused),
    ("sasl.client.callback.handler.class", Unused),
    ("security.providers", Unused),
    ("send.buffer.bytes", Unused),
    ("socket.connection.setup.timeout.max.ms", Unused),
    ("ssl.enabled.protocols", Unused),
    ("ssl.engine.factory.class", Unused),
    ("ssl.key.password", Rejected(ENCRYPTED_KEY)),
    ("ssl.keymanager.algorithm", Unused),
    ("ssl.keystore.certificate.chain", Rejected(PEM_IDENTITY)),
    ("ssl.keystore.key", Rejected(PEM_IDENTITY)),
    ("ssl.keystore.type", Unused),
    ("ssl.protocol", Unused),
    ("ssl.provider", Unused),
    ("ssl.secure.random.implementation", Unused),
    ("ssl.trustmanager.algorithm", Unused),
    ("ssl.truststore.certificates", Rejected(PEM_CA)),
    ("ssl.truststore.location", Rejected(PEM_CA)),
    ("ssl.truststore.password", Rejected(PEM_CA)),
    ("ssl.truststore.type", Unused),
    ("value.deserializer", Unused),
    // librdkafka: global properties.
    ("api.version.fallback.ms", Unused),
    ("api.version.request", Only(&["true"], "kgroup always asks brokers for their API versions (Kafka 0.10+)")),
    ("api.version.request.timeout.ms", Unused),
    ("broker.address.family", Unused),
    ("broker.address.ttl", Unused),
    ("broker.version.fallback", Unused),
    ("builtin.features", Unused),
    ("coordinator.query.interval.ms", Unused),
    ("debug", Unused),
    ("enable.partition.eof", Unused),
    ("enable.random.seed", Unused),
    ("enable.sasl.oauthbearer.unsecure.jwt", Unused),
    ("enable.ssl.certificate.verification", Only(&["true"], ALWAYS_VERIFIED)),
    ("enabled_events", Unused),
    ("fetch.error.backoff.ms", Unused),
    ("fetch.message.max.bytes", Alias("max.partition.fetch.bytes")),
    ("fetch.queue.backoff.ms", Unused),
    ("group.protocol.type", Only(&["consumer"], "kgroup joins groups of protocol type consumer only")),
    ("https.ca.location", Unused),
    ("https.ca.pem", Unused),
    ("internal.termination.signal", Unused),
    ("log.connection.close", Unused),
    ("log.queue", Unused),
    ("log.thread.name", Unused),
    ("log_level", Unused),
    ("max.in.flight", Unused),
    ("max.in.flight.requests.per.connection", Unused),
    ("message.copy.max.bytes", Unused),
    ("message.max.bytes", Unused),
    ("metadata.broker.list", Alias("bootstrap.servers")),
    ("offset.store.method", Only(&["broker"], "kgroup stores offsets in Kafka only")),
    ("plugin.library.paths", Unused),
    ("queued.min.messages", Unused),
    ("receive.message.max.bytes", Unused),
    ("share.acknowledgement.mode", Unused),
    ("socket.blocking.max.ms", Unused),
    ("socket.keepalive.enable", Unused),
    ("socket.max.fails", Unused),
    ("socket.nagle.disable", Unused),
    ("socket.receive.buffer.bytes", Unused),
    ("socket.send.buffer.bytes", Unused),
    ("socket.timeout.ms", Unused),
    ("ssl.ca.certificate.stores", Unused),
    ("ssl.ca.pem", Rejected("write the certificates to a PEM file and set ssl.ca.location")),
    ("ssl.certificate.pem", Rejected("write the certificate to a PEM file and set ssl.certificate.location")),
    ("ssl.crl.location", Rejected("kgroup does not check certificate revocation lists")),
    ("ssl.curves.list", Unused),
    ("ssl.engine.id", Unused),
    ("ssl.engine.location", Unused),
    ("ssl.key.pem", Rejected("write the key to a PEM file and set ssl.key.location")),
    ("ssl.providers", Unused),
    ("ssl.sigalgs.list", Unused),
    ("statistics.interval.ms", Unused),
    ("topic.blacklist", Unused),
    ("topic.metadata.propagation.max.ms", Unused),
    ("topic.metadata.refresh.fast.cnt", Unused),
    ("topic.metadata.refresh.fast.interval.ms", Unused),
    ("topic.metadata.refresh.interval.ms", Alias("metadata.max.age.ms")),
    ("topic.metadata.refresh.sparse", Unused),
    // librdkafka: topic properties of consumers.
    ("auto.commit.enable", Alias("enable.auto.commit")),
    ("consume.callback.max.messages", Unused),
    ("offset.store.path", Unused),
    ("offset.store.sync.interval.ms", Unused),
    // librdkafka: producer properties, accepted in a consumer's configuration as librdkafka
    // itself does, so that one file can serve both.
    ("acks", Unused),
    ("batch.num.messages", Unused),
    ("batch.size", Unused),
    ("compression.codec", Unused),
    ("compression.level", Unused),
    ("compression.type", Unused),
    ("delivery.report.only.error", Unused),
    ("delivery.timeout.ms", Unused),
    ("enable.gapless.guarantee", Unused),
    ("enable.idempotence", Unused),
    ("linger.ms", Unused),
    ("message.send.max.retries", Unused),
    ("message.timeout.ms", Unused),
    ("partitioner", Unused),
    ("produce.offset.report", Unused),
    ("queue.buffering.backpressure.threshold", Unused),
    ("queue.buffering.max.kbytes", Unused),
    ("queue.buffering.max.messages", Unused),
    ("queue.buffering.max.ms", Unused),
    ("queuing.strategy", Unused),
    ("request.required.acks", Unused),
    ("retries", Unused),
    ("sticky.partitioning.linger.ms", Unused),
    ("transaction.timeout.ms", Unused),
    ("transactional.id", Unused),
];

/// The entry for `key`, with the key as the table spells it.
pub(super) fn lookup(key: &str) -> Option<(&'static str, &'static Handling)> {
    KEYS.iter().find_map(|(name, handling)| {
        let matches = if name.ends_with('.') { key.starts_with(name) && key.len() > name.len() } else { key == *name };
        matches.then_some((*name, handling))
    })
}

/// Every key of the table (prefixes left out), for suggestions.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|(name, _)| *name).filter(|name| !name.ends_with('.'))
}

/// The Java assignor class (fully qualified or not) a kgroup assignor stands for.
pub(super) fn java_assignor(class: &str) -> Option<&'static str> {
    match class.strip_prefix("org.apache.kafka.clients.consumer.").unwrap_or(class) {
        "RangeAssignor" => Some("range"),
        "RoundRobinAssignor" => Some("roundrobin"),
        "StickyAssignor" => Some("sticky"),
        "CooperativeStickyAssignor" => Some("cooperative-sticky"),
        _ => None,
    }
}
