import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.log4j.AppenderSkeleton;
import org.apache.log4j.Level;
import org.apache.log4j.Logger;
import org.apache.log4j.spi.LoggingEvent;

/**
 * One consumer-group member of the Java reference client (kafka-clients 3.6.2) for kgroup's
 * harnesses and interop tests: joins GROUP on TOPIC, polls batches of up to max.poll.records,
 * sleeps PROCESSING_MS per batch (the simulated work), commits each batch synchronously, and
 * prints one line per event to stdout, each starting with the wall-clock time in ms:
 *
 *   <ms> STARTED <member-client-id>
 *   <ms> ASSIGNED|REVOKED|LOST <generation> <member-id> <p,p,...>      (partitions of TOPIC)
 *   <ms> BATCH <generation> <p>:<first>-<last> ...                      (records handed out)
 *   <ms> COMMIT_SENT <generation>                                      (commitSync called)
 *   <ms> COMMIT_OK <generation> <p>:<offset> ...                       (commitSync returned)
 *   <ms> COMMIT_FAIL <generation> <ERROR_NAME|NOT_SENT|exception> <p>:<offset> ...
 *   <ms> CLOSED
 *
 * A commit's generation is groupMetadata().generationId() just before commitSync: the request
 * carries it, since only poll() joins a new generation (commitSync can only lose it, and then
 * refuses to send: NOT_SENT).
 *
 * ERROR_NAME is the broker's error for the commit (read off the client's own per-partition
 * failure log line); NOT_SENT means the client refused the commit before sending it (3.6's
 * generationIfStable() is null while it rebalances).
 *
 * Stops when standard input closes (or reads "stop"), on SIGTERM, or after max seconds;
 * closes cleanly (LeaveGroup). Usage:
 *   java -cp 'libs/*:peer' GroupMember BOOTSTRAP GROUP TOPIC PROCESSING_MS MAX_SECONDS [key=value ...]
 */
public class GroupMember {
    /** The broker error of the last failed commit, from ConsumerCoordinator's log. */
    static volatile String lastCommitError = null;

    static final class CommitErrorAppender extends AppenderSkeleton {
        @Override protected void append(LoggingEvent event) {
            String text = String.valueOf(event.getRenderedMessage());
            // LogContext puts "[Consumer clientId=..., groupId=...] " in front of the message.
            if (!text.contains("Offset commit failed on partition")) return;
            for (Errors e : Errors.values()) {
                if (e.message() != null && text.endsWith(e.message())) {
                    lastCommitError = e.name();
                    return;
                }
            }
            lastCommitError = "UNKNOWN";
        }
        @Override public void close() { }
        @Override public boolean requiresLayout() { return false; }
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
        Logger coordinatorLog = Logger.getLogger("org.apache.kafka.clients.consumer.internals.ConsumerCoordinator");
        coordinatorLog.setLevel(Level.WARN);
        coordinatorLog.addAppender(new CommitErrorAppender());

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[1]);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "1000");
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 1) {
                System.err.println("not key=value: " + args[i]);
                System.exit(2);
            }
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
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
                    String cause = lastCommitError != null ? lastCommitError
                        : (e instanceof RebalanceInProgressException || e instanceof CommitFailedException) ? "NOT_SENT"
                        : e.getClass().getSimpleName();
                    out("COMMIT_FAIL " + gen + " " + cause + offsets);
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
