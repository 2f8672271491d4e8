"""Seeds each fuzz target's corpus (fuzz/corpus/<target>/) from the golden fixtures
(protocol-tests/fixtures/golden/): every response frame for `responses`, every consumer-protocol
subscription and assignment inside them for `consumer_protocol`, and a few hand-made inputs for
the others. Idempotent: a seed is named by its content."""

import hashlib
import pathlib
import struct
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
GOLDEN = FUZZ.parent / "protocol-tests" / "fixtures" / "golden"

# The `responses` target's API byte and each API's lowest version (the version byte is an offset
# from it): see fuzz_targets/responses.rs.
RESPONSE_APIS = {
    "FindCoordinator": (6, 0),
    "JoinGroup": (7, 0),
    "SyncGroup": (8, 0),
    "Heartbeat": (9, 0),
    "LeaveGroup": (10, 0),
    "OffsetCommit": (11, 2),
    "OffsetFetch": (12, 1),
}


def write(target, data):
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def sections(path):
    """`(direction, version, lines)` per section; a line is `(indent, bytes, comment)`."""
    current = None
    for raw in path.read_text().splitlines():
        if raw.startswith("["):
            direction, version = raw.strip("[]").split()
            current = (direction, int(version), [])
            yield current
            continue
        if current is None or not raw.strip() or raw.lstrip().startswith("#") or raw.startswith("@"):
            continue
        data, _, comment = raw.partition("#")
        indent = len(raw) - len(raw.lstrip())
        current[2].append((indent, bytes.fromhex("".join(data.split())), comment))


def consumer_protocol_payloads(lines):
    """The bytes of every field whose comment says it holds a ConsumerProtocol message."""
    for i, (indent, _, comment) in enumerate(lines):
        if "ConsumerProtocol" in comment:
            payload = b""
            for inner_indent, data, _ in lines[i + 1 :]:
                if inner_indent <= indent:
                    break
                payload += data
            yield payload


def main():
    for path in sorted(GOLDEN.glob("*.txt")):
        api, lowest = RESPONSE_APIS[path.stem]
        for direction, version, lines in list(sections(path)):
            frame = b"".join(data for _, data, _ in lines)
            if direction == "response":
                write("responses", bytes([api, version - lowest]) + frame[4:])
            for payload in consumer_protocol_payloads(lines):
                write("consumer_protocol", payload)
    # SCRAM: selector (SHA-256), server-first, NUL, server-final (RFC 7677's exchange, whose
    # client nonce kgroup::fuzzing uses).
    write(
        "scram",
        b"\x00r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        b"\x00v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    )
    # Record batches: plain records compressed by the target with each codec (mode 2), one
    # record `00 00 00 02 6b 02 76 00` (key "k", value "v", no headers) behind a length.
    record = bytes([0, 0, 0, 2, ord("k"), 2, ord("v"), 0])
    for codec in range(5):
        write("record_batches", bytes([2, codec]) + struct.pack(">H", 1) + bytes([len(record) * 2]) + record)
    write("group_machine", bytes(range(256)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
