import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The Java reference client (kafka-clients 3.6.2) in kgroup's `benches/compare.rs`: the same two
 * roles as the Rust children, one consumer alone in GROUP on TOPIC, measuring itself.
 *
 *   consume: poll(1 s) until COUNT records, reading every key and value.
 *   commit:  a batch per poll (max.poll.records, set by the harness to 100), then commitSync of
 *            each partition's next offset; the first 50 commits are not timed, then COUNT are.
 *
 * Prints one line, `RESULT key=value ...`, with the keys the Rust children print (rates from the
 * first assignment, onPartitionsAssigned, to the last record; the process CPU time at that
 * assignment, so the JVM's start-up can be told apart; VmHWM read after close()). Exits non-zero
 * when nothing arrives for 60 s. Usage:
 *   java -cp 'libs/*:peer' BenchConsumer consume|commit BOOTSTRAP TOPIC GROUP COUNT [key=value ...]
 */
public class BenchConsumer {
    static final int WARMUP = 50;
    static final long IDLE_MS = 60_000;

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: BenchConsumer consume|commit BOOTSTRAP TOPIC GROUP COUNT [key=value ...]");
            System.exit(2);
        }
        String role = args[0];
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[3]);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        for (int i = 5; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq < 1) throw new IllegalArgumentException("not key=value: " + args[i]);
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        String topic = args[2];
        long count = Long.parseLong(args[4]);
        Map<String, Double> result = new TreeMap<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            long[] assigned = {0, 0};
            c.subscribe(Collections.singletonList(topic), new ConsumerRebalanceListener() {
                @Override public void onPartitionsRevoked(Collection<TopicPartition> parts) { }
                @Override public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                    if (assigned[0] == 0) {
                        assigned[0] = System.currentTimeMillis();
                        assigned[1] = processCpuNanos();
                    }
                }
            });
            if (role.equals("consume")) {
                consume(c, count, result);
            } else if (role.equals("commit")) {
                commit(c, (int) count, result);
            } else {
                throw new IllegalArgumentException("unknown role " + role);
            }
            if (assigned[0] == 0) throw new IllegalStateException("no assignment seen");
            if (role.equals("consume")) {
                double seconds = (result.remove("last_ms") - assigned[0]) / 1000.0;
                result.put("seconds", seconds);
                result.put("rate", seconds > 0 ? result.get("messages") / seconds : 0.0);
            }
            result.put("cpu_at_assign_s", assigned[1] / 1e9);
        }
        result.put("vm_hwm_kib", vmHwmKib());
        StringBuilder line = new StringBuilder("RESULT");
        for (Map.Entry<String, Double> e : result.entrySet()) line.append(' ').append(e.getKey()).append('=').append(e.getValue());
        System.out.println(line);
    }

    static void consume(KafkaConsumer<byte[], byte[]> c, long count, Map<String, Double> result) {
        long messages = 0, bytes = 0, lastMs = 0, progress = System.currentTimeMillis();
        while (messages < count) {
            ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofSeconds(1));
            if (recs.isEmpty()) {
                idle(progress, messages);
                continue;
            }
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                bytes += (r.key() == null ? 0 : r.key().length) + (r.value() == null ? 0 : r.value().length);
            }
            messages += recs.count();
            lastMs = progress = System.currentTimeMillis();
        }
        result.put("messages", (double) messages);
        result.put("bytes", (double) bytes);
        result.put("last_ms", (double) lastMs);
    }

    static void commit(KafkaConsumer<byte[], byte[]> c, int commits, Map<String, Double> result) {
        List<Long> latencies = new ArrayList<>(commits);
        long partitions = 0, progress = System.currentTimeMillis();
        int seen = 0;
        while (latencies.size() < commits) {
            ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofSeconds(1));
            if (recs.isEmpty()) {
                idle(progress, seen);
                continue;
            }
            progress = System.currentTimeMillis();
            Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
            for (TopicPartition tp : recs.partitions()) {
                List<ConsumerRecord<byte[], byte[]>> l = recs.records(tp);
                next.put(tp, new OffsetAndMetadata(l.get(l.size() - 1).offset() + 1));
            }
            long started = System.nanoTime();
            c.commitSync(next);
            long latency = System.nanoTime() - started;
            if (++seen > WARMUP) {
                latencies.add(latency);
                partitions += next.size();
            }
        }
        Collections.sort(latencies);
        int n = Math.max(latencies.size(), 1);
        double sum = 0;
        for (long l : latencies) sum += l / 1e6;
        result.put("commits", (double) latencies.size());
        result.put("p50_ms", latencies.get(Math.min((int) (n * 0.50), n - 1)) / 1e6);
        result.put("p99_ms", latencies.get(Math.min((int) (n * 0.99), n - 1)) / 1e6);
        result.put("mean_ms", sum / n);
        result.put("partitions_per_commit", (double) partitions / n);
    }

    static void idle(long progress, long seen) {
        if (System.currentTimeMillis() - progress > IDLE_MS) {
            throw new IllegalStateException("nothing for " + IDLE_MS + " ms after " + seen);
        }
    }

    /** CPU time of the whole JVM (every thread, the JIT and the collector included). */
    static long processCpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    /** Peak resident set size, as the Rust children read theirs. */
    static double vmHwmKib() throws Exception {
        for (String l : Files.readAllLines(Paths.get("/proc/self/status"))) {
            if (l.startsWith("VmHWM:")) return Double.parseDouble(l.substring(6).trim().replace(" kB", ""));
        }
        throw new IllegalStateException("no VmHWM in /proc/self/status");
    }
}
