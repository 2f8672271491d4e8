import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ApiException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.appender.AbstractAppender;
import org.apache.logging.log4j.core.config.Configuration;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.config.Property;

/**
 * One consumer-group member of the Java reference client, kafka-clients 4.x (the jars of the
 * Kafka 4 release it runs against), for kgroup's harnesses: the Kafka 4 counterpart of
 * integration/kafka36/java/GroupMember.java, with the same arguments and the same lines. It
 * speaks the group protocol its properties name: group.protocol=classic (the default) or
 * consumer (KIP-848). Under the consumer protocol the broker owns the session, heartbeat and
 * assignor, and the client refuses session.timeout.ms, heartbeat.interval.ms and
 * partition.assignment.strategy: this member sets its classic defaults for the first two only
 * under the classic protocol, and the caller passes none of them.
 *
 *   <ms> STARTED <member-client-id>
 *   <ms> ASSIGNED|REVOKED|LOST <generation> <member-id> <p,p,...>      (partitions of TOPIC)
 *   <ms> BATCH <generation> <p>:<first>-<last> ...                      (records handed out)
 *   <ms> COMMIT_SENT <generation>                                      (commitSync called)
 *   <ms> COMMIT_OK <generation> <p>:<offset> ...                       (commitSync returned)
 *   <ms> COMMIT_FAIL <generation> <ERROR_NAME|NOT_SENT|exception> <p>:<offset> ...
 *   <ms> CLOSED
 *
 * The generation is groupMetadata().generationId(): the generation under the classic protocol,
 * the member epoch under the consumer protocol. Under the consumer protocol the callbacks name
 * only the partitions added (ASSIGNED, called for every new epoch, also with none) and revoked,
 * and a commit is stamped by the client's background thread with the epoch it holds when it
 * builds the request, which can be later than the one printed with COMMIT_SENT.
 *
 * ERROR_NAME is the broker's error for the commit: under the classic protocol read off the
 * client's own per-partition failure log line (ConsumerCoordinator, through a log4j 2
 * appender), as the 3.6 member does; under the consumer protocol from the exception commitSync
 * throws (STALE_MEMBER_EPOCH and UNKNOWN_MEMBER_ID come as a CommitFailedException whose
 * message ends with the error's message). NOT_SENT: the classic client refused the commit
 * before sending it (generationIfStable() is null while it rebalances).
 *
 * Stops when standard input closes (or reads "stop"), on SIGTERM, or after max seconds;
 * closes cleanly (leaves the group). Usage:
 *   java -cp 'libs/*:peer' GroupMember BOOTSTRAP GROUP TOPIC PROCESSING_MS MAX_SECONDS [key=value ...]
 */
public class GroupMember {
    /** The broker error of the last failed commit, from ConsumerCoordinator's log (classic). */
    static volatile String lastCommitError = null;

    /** Whether the member speaks the classic group protocol (else KIP-848's consumer protocol). */
    static boolean classic = true;

    static final String COORDINATOR = "org.apache.kafka.clients.consumer.internals.ConsumerCoordinator";

    /** The error whose message ends `text` (the longest such message), or null. */
    static String errorEndingWith(String text) {
        if (text == null) return null;
        Errors found = null;
        for (Errors e : Errors.values()) {
            String m = e.message();
            if (m != null && !m.isEmpty() && text.endsWith(m) && (found == null || m.length() > found.message().length())) {
                found = e;
            }
        }
        return found == null ? null : found.name();
    }

    /** Routes ConsumerCoordinator's warnings and errors to lastCommitError as well. */
    static void watchCommitFailures() {
        LoggerContext context = (LoggerContext) LogManager.getContext(false);
        Configuration config = context.getConfiguration();
        AbstractAppender appender = new AbstractAppender("commit-errors", null, null, true, Property.EMPTY_ARRAY) {
            @Override public void append(LogEvent event) {
                // LogContext puts "[Consumer clientId=..., groupId=...] " in front of the message.
                String text = event.getMessage().getFormattedMessage();
                if (!text.contains("Offset commit failed on partition")) return;
                String error = errorEndingWith(text);
                lastCommitError = error != null ? error : "UNKNOWN";
            }
        };
        appender.start();
        config.addAppender(appender);
        LoggerConfig coordinator = new LoggerConfig(COORDINATOR, Level.WARN, true);
        coordinator.addAppender(appender, Level.WARN, null);
        config.addLogger(COORDINATOR, coordinator);
        context.updateLoggers();
    }

    /** Why commitSync failed: the broker's error where the client names it, else the exception. */
    static String commitFailure(KafkaException e) {
        if (lastCommitError != null) return lastCommitError;
        if (classic) {
            boolean refused = e instanceof RebalanceInProgressException || e instanceof CommitFailedException;
            return refused ? "NOT_SENT" : e.getClass().getSimpleName();
        }
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ApiException && Errors.forException(t) != Errors.UNKNOWN_SERVER_ERROR) {
                return Errors.forException(t).name();
            }
            String error = errorEndingWith(t.getMessage());
            if (error != null) return error;
        }
        return e.getClass().getSimpleName();
    }

    static synchronized void out(String line) {
        System.out.println(System.currentTimeMillis() + " " + line);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: GroupMember BOOTSTRAP GROUP TOPIC PROCESSING_MS MAX_SECONDS [key=value ...]");
            System.exit(2);
        }
        watchCommitFailures();

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1000");
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 1) {
                System.err.println("not key=value: " + args[i]);
                System.exit(2);
            }
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        classic = !GroupProtocol.CONSUMER.name().equalsIgnoreCase(p.getProperty(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic"));
        if (classic) {
            p.putIfAbsent(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.putIfAbsent(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        }
        String topic = args[2];
        long processingMs = Long.parseLong(args[3]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[4]) * 1000L;

        KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p);
        AtomicBoolean closing = new AtomicBoolean(false);
        Thread main = Thread.currentThread();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            closing.set(true);
            c.wakeup();
            try { main.join(15000); } catch (InterruptedException ignored) { }
        }));
        Thread stdin = new Thread(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in))) {
                String line;
                while ((line = r.readLine()) != null && !line.trim().equals("stop")) { }
            } catch (Exception ignored) { }
            closing.set(true);
            c.wakeup();
        });
        stdin.setDaemon(true);
        stdin.start();

        c.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
            @Override public void onPartitionsRevoked(Collection<TopicPartition> parts) { event("REVOKED", c, parts); }
            @Override public void onPartitionsAssigned(Collection<TopicPartition> parts) { event("ASSIGNED", c, parts); }
            @Override public void onPartitionsLost(Collection<TopicPartition> parts) { event("LOST", c, parts); }
        });
        out("STARTED " + p.getProperty(ConsumerConfig.CLIENT_ID_CONFIG, "-"));
        try {
            while (!closing.get() && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) continue;
                StringBuilder batch = new StringBuilder("BATCH ").append(c.groupMetadata().generationId());
                Map<TopicPartition, OffsetAndMetadata> commit = new TreeMap<>(Comparator.comparingInt(TopicPartition::partition));
                for (TopicPartition tp : recs.partitions()) {
                    List<ConsumerRecord<byte[], byte[]>> l = recs.records(tp);
                    long first = l.get(0).offset(), last = l.get(l.size() - 1).offset();
                    batch.append(' ').append(tp.partition()).append(':').append(first).append('-').append(last);
                    commit.put(tp, new OffsetAndMetadata(last + 1));
                }
                out(batch.toString());
                if (processingMs > 0) Thread.sleep(processingMs);
                StringBuilder offsets = new StringBuilder();
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : commit.entrySet()) {
                    offsets.append(' ').append(e.getKey().partition()).append(':').append(e.getValue().offset());
                }
                int gen = c.groupMetadata().generationId();
                lastCommitError = null;
                out("COMMIT_SENT " + gen);
                try {
                    c.commitSync(commit);
                    out("COMMIT_OK " + gen + offsets);
                } catch (WakeupException e) {
                    throw e;
                } catch (KafkaException e) {
                    out("COMMIT_FAIL " + gen + " " + commitFailure(e) + offsets);
                }
            }
        } catch (WakeupException e) {
            // asked to stop
        } finally {
            c.close(Duration.ofSeconds(10));
            out("CLOSED");
        }
    }

    static void event(String kind, KafkaConsumer<?, ?> c, Collection<TopicPartition> parts) {
        ConsumerGroupMetadata m = c.groupMetadata();
        List<Integer> ids = new ArrayList<>();
        for (TopicPartition tp : parts) ids.add(tp.partition());
        Collections.sort(ids);
        StringBuilder s = new StringBuilder();
        for (int id : ids) s.append(s.length() == 0 ? "" : ",").append(id);
        out(kind + " " + m.generationId() + " " + m.memberId() + " " + (s.length() == 0 ? "-" : s.toString()));
    }
}
