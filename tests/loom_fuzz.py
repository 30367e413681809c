#!/usr/bin/python3
"""tests/loom_fuzz.py — send garbage to loom's sockets (standard library only).

loom's head and node daemons speak ZeroMQ (ZMTP 3.x) with one msgpack frame
per message (runtime/wire.h):  [version, type, req, field...].  Their tcp
ports speak the CURVE mechanism (runtime/curve.h), which this script cannot
(the standard library has no Curve25519): there it attacks the transport
(greetings, handshakes, garbage) and checks that a plaintext peer is shut
out and never answered.  The executors' ipc sockets speak NULL: there it
gets past the transport and hands the daemons' decoders bad frames:

  random      random bytes instead of a greeting
  greeting    truncated and corrupted ZMTP greetings
  handshake   truncated and corrupted READY commands after a valid greeting
  msgpack     a valid handshake (Socket-Type DEALER), then random msgpack
  truncated   real loom messages (HELLO, FETCH, ...) cut at every length
  mutated     real loom messages with bytes flipped, inserted, removed
  edges       msgpack edge cases: huge counts and lengths, deep nesting, ...
  huge        frame headers announcing enormous sizes, then hang up
  churn       many connections opened and dropped at once
  authed      (with --secret-file) HELLO with the real secret as a driver,
              then well-formed but meaningless requests (the secret no
              longer opens anything: tcp ports want CURVE keys, executor
              sockets a per-executor token)

Targets are tcp:HOST:PORT (a loom ZMTP port), ipc:PATH (a loom ipc socket)
or other:HOST:PORT (a port of unknown protocol: it gets the same bytes and
must only keep accepting connections).  Work is bounded by --payloads and
--seconds.  Before the garbage, and again after it, every target gets a valid
handshake and a HELLO with a wrong secret; a plaintext tcp target must answer
it with an ERROR (so the test knows the bytes reached loom's decoder, and that
loom still answers afterwards); a CURVE target must greet and then close the
connection of that plaintext peer.

Commands:
  loom_fuzz.py fuzz --target tcp:127.0.0.1:7787 [--target ipc:/path] ...
               [--payloads 2000] [--seconds 60] [--seed N] [--secret-file F]
  loom_fuzz.py hello --target tcp:HOST:PORT --secret SECRET [--role 1]
               prints the reply: "ERROR <code> <text>", the type name, or
               "REFUSED CURVE" (a CURVE port that shut the plaintext peer out)
Exit status: 0 when every check held, 1 otherwise.
"""
import argparse
import os
import random
import socket
import struct
import sys
import time

# ---- msgpack -----------------------------------------------------------------


class Raw(bytes):
    """Bytes inserted into a msgpack stream as they are."""


def pack(o):
    if isinstance(o, Raw):
        return bytes(o)
    if o is None:
        return b"\xc0"
    if o is True:
        return b"\xc3"
    if o is False:
        return b"\xc2"
    if isinstance(o, int):
        if 0 <= o < 0x80:
            return bytes([o])
        if -32 <= o < 0:
            return struct.pack("b", o)
        if 0 <= o <= 0xFF:
            return b"\xcc" + struct.pack(">B", o)
        if 0 <= o <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", o)
        if 0 <= o <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", o)
        if 0 <= o <= 0xFFFFFFFFFFFFFFFF:
            return b"\xcf" + struct.pack(">Q", o)
        if -0x80 <= o:
            return b"\xd0" + struct.pack(">b", o)
        if -0x8000 <= o:
            return b"\xd1" + struct.pack(">h", o)
        if -0x80000000 <= o:
            return b"\xd2" + struct.pack(">i", o)
        return b"\xd3" + struct.pack(">q", max(o, -(1 << 63)))
    if isinstance(o, float):
        return b"\xcb" + struct.pack(">d", o)
    if isinstance(o, str):
        b = o.encode("utf-8", "surrogatepass")
        n = len(b)
        if n < 32:
            return bytes([0xA0 | n]) + b
        if n <= 0xFF:
            return b"\xd9" + bytes([n]) + b
        if n <= 0xFFFF:
            return b"\xda" + struct.pack(">H", n) + b
        return b"\xdb" + struct.pack(">I", n) + b
    if isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n <= 0xFF:
            return b"\xc4" + bytes([n]) + bytes(o)
        if n <= 0xFFFF:
            return b"\xc5" + struct.pack(">H", n) + bytes(o)
        return b"\xc6" + struct.pack(">I", n) + bytes(o)
    if isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            h = bytes([0x90 | n])
        elif n <= 0xFFFF:
            h = b"\xdc" + struct.pack(">H", n)
        else:
            h = b"\xdd" + struct.pack(">I", n)
        return h + b"".join(pack(x) for x in o)
    if isinstance(o, dict):
        n = len(o)
        if n < 16:
            h = bytes([0x80 | n])
        elif n <= 0xFFFF:
            h = b"\xde" + struct.pack(">H", n)
        else:
            h = b"\xdf" + struct.pack(">I", n)
        return h + b"".join(pack(k) + pack(v) for k, v in o.items())
    raise TypeError(type(o))


def unpack(b, i=0, depth=0):
    """Decode one msgpack value at b[i:]; returns (value, next index)."""
    if depth > 64:
        raise ValueError("too deep")
    t = b[i]
    i += 1
    if t < 0x80:
        return t, i
    if t >= 0xE0:
        return t - 0x100, i
    if 0xA0 <= t <= 0xBF:
        n = t & 31
        return b[i:i + n].decode("utf-8", "replace"), i + n
    if 0x90 <= t <= 0x9F:
        return _unpack_seq(b, i, t & 15, depth)
    if 0x80 <= t <= 0x8F:
        return _unpack_map(b, i, t & 15, depth)
    fixed = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h",
             0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if t in fixed:
        f = fixed[t]
        n = struct.calcsize(f)
        return struct.unpack(f, b[i:i + n])[0], i + n
    if t == 0xC0:
        return None, i
    if t in (0xC2, 0xC3):
        return t == 0xC3, i
    lens = {0xD9: (">B", 1, "s"), 0xDA: (">H", 2, "s"), 0xDB: (">I", 4, "s"),
            0xC4: (">B", 1, "b"), 0xC5: (">H", 2, "b"), 0xC6: (">I", 4, "b"),
            0xDC: (">H", 2, "a"), 0xDD: (">I", 4, "a"), 0xDE: (">H", 2, "m"), 0xDF: (">I", 4, "m")}
    if t in lens:
        f, w, kind = lens[t]
        n = struct.unpack(f, b[i:i + w])[0]
        i += w
        if kind == "s":
            return b[i:i + n].decode("utf-8", "replace"), i + n
        if kind == "b":
            return bytes(b[i:i + n]), i + n
        if kind == "a":
            return _unpack_seq(b, i, n, depth)
        return _unpack_map(b, i, n, depth)
    raise ValueError("msgpack type 0x%02x" % t)


def _unpack_seq(b, i, n, depth):
    out = []
    for _ in range(n):
        v, i = unpack(b, i, depth + 1)
        out.append(v)
    return out, i


def _unpack_map(b, i, n, depth):
    out = {}
    for _ in range(n):
        k, i = unpack(b, i, depth + 1)
        v, i = unpack(b, i, depth + 1)
        out[k if not isinstance(k, (list, dict)) else repr(k)] = v
    return out, i


# ---- loom messages (runtime/wire.h) ------------------------------------------

PROTO = 1
(ERROR, OK, HELLO, WELCOME, HEARTBEAT, SUBMIT, SUBMITTED, PUT_DONE, SUBSCRIBE, OBJ_READY,
 RELEASE, CANCEL, STATUS, INFO, JOB_INFO, JOB_REF, REF, JOB_DELETE, BYE, ASSIGN, CANCEL_TASK,
 DELETE_OBJS, TASK_DONE, OBJ_ADDED, FETCH, CHUNK, PUSH, RUN, KV_PUT, KV_GET, KV_DEL, ACTOR_LOOKUP,
 ACTOR_KILL, ACTOR_DIED, ACTORS, PG_CREATE, PG_REMOVE, PG_INFO, DRAIN, RUNNING) = range(1, 41)
TYPE_NAMES = {v: k for k, v in globals().items() if isinstance(v, int) and k.isupper() and 1 <= v <= 40
              and k not in ("PROTO",)}
ROLE_DRIVER, ROLE_NODE, ROLE_EXECUTOR = 1, 2, 3


def msg(mtype, req, *fields):
    return pack([PROTO, mtype, req] + list(fields))


def node_desc(rng):
    return [0, "fuzzhost", "127.0.0.1:1", "/nonexistent/store", "/nonexistent/spill",
            1.0, 1 << 20, 1 << 20, 2, 1 << 30, [["nvlink", 1.0]], [["zone", "a"]]]


def wire_arg(kind=0, value=b"", ref=b"", size=0, locs=()):
    return [kind, value, ref, size, list(locs)]


def wire_sched(gpus=0.0, res=(), labels=(), strategy=0, node=0, soft=False, pg=b"", bundle=-1):
    return [gpus, 0, [list(r) for r in res], [list(l) for l in labels], strategy, node, soft, pg, bundle, "", 3, False]


def wire_actor(op=0, actor=b"", conc=0, detached=False, name=""):
    return [op, actor, conc, detached, name, 0, 0]


def wire_task(rng, kind=0, sched=None, actor=None):
    """A function task whose library ref the head does not know (so it is refused)."""
    return [rng.randbytes(16), kind, "fuzz", wire_arg(1, b"", rng.randbytes(20), 100, []),
            "noop", [], [], "", [], False, 1.0, 0, [wire_arg(0, b"\x01")],
            sched or wire_sched(), actor or wire_actor()]


def sample_messages(rng, secret="0" * 64):
    """Well-formed messages of every type a peer may send (with a wrong secret)."""
    ref = rng.randbytes(20)
    return [
        msg(HELLO, 1, ROLE_DRIVER, secret, "fuzzhost", 4242, []),
        msg(HELLO, 2, ROLE_NODE, secret, "fuzzhost", 4243, [node_desc(rng)]),
        msg(HELLO, 3, ROLE_EXECUTOR, secret, "fuzzhost", 4244, []),
        msg(STATUS, 4),
        msg(HEARTBEAT, 0, 123, 4),
        msg(SUBMIT, 5, "fuzzjob", 1, [wire_task(rng)]),
        msg(PUT_DONE, 6, ref, 3, 1, b"abc", 0),
        msg(SUBSCRIBE, 7, [ref, rng.randbytes(20)]),
        msg(RELEASE, 0, [ref]),
        msg(CANCEL, 8, ref),
        msg(JOB_INFO, 9, "0123456789abcdef"),
        msg(JOB_REF, 10, "0123456789abcdef", "task", 0),
        msg(JOB_DELETE, 11, "0123456789abcdef"),
        msg(TASK_DONE, 0, ref, 0, "", [[0, 3, b"abc"]], 0),
        msg(OBJ_ADDED, 0, ref, 10),
        msg(FETCH, 12, ref, 0, 1 << 20),
        msg(PUSH, 13, ref, 0, 5, b"hello"),
        msg(CHUNK, 14, ref, 0, 5, b"hello"),
        msg(OBJ_READY, 0, ref, 0, 3, b"abc", [[1, "127.0.0.1:1"]], ""),
        msg(ASSIGN, 0, [wire_task(rng)]),
        msg(RUN, 0, [wire_task(rng)]),
        msg(WELCOME, 1, 7, [node_desc(rng)]),
        msg(ERROR, 1, -3, "an error"),
        msg(OK, 1),
        msg(BYE, 0),
        msg(INFO, 1, pack({"a": 1})),
        msg(REF, 1, ref),
        msg(SUBMITTED, 1, "0123456789abcdef"),
        msg(CANCEL_TASK, 0, ref),
        msg(DELETE_OBJS, 0, [ref]),
        msg(SUBMIT, 15, "fuzzjob", 0, [wire_task(rng, sched=wire_sched(0.5, [("nvlink", 1.0)], [("zone", "a")], 2, 1, True))]),
        msg(SUBMIT, 16, "fuzzjob", 0, [wire_task(rng, actor=wire_actor(2, rng.randbytes(16)))]),
        msg(SUBMIT, 17, "fuzzjob", 0, [wire_task(rng, actor=wire_actor(1, rng.randbytes(16), 4, True, "fuzz-actor"))]),
        msg(KV_PUT, 18, "fuzz/key", b"value"),
        msg(KV_GET, 19, "fuzz/key", 0),
        msg(KV_GET, 20, "fuzz/other", 100),
        msg(KV_DEL, 21, "fuzz/key"),
        msg(ACTOR_LOOKUP, 22, "nobody"),
        msg(ACTOR_KILL, 23, ref),
        msg(ACTOR_DIED, 0, ref, -19, "gone"),
        msg(ACTORS, 24),
        msg(PG_CREATE, 25, "fuzz-pg", 3, [[1.0, 0, 0.0, 0, []], [1.0, 0, 1.0, 0, [["nvlink", 1.0]]]]),
        msg(PG_INFO, 26, ref),
        msg(PG_REMOVE, 27, ref),
        msg(DRAIN, 28, 999),
        msg(RUNNING, 0, [ref]),
    ]


def random_obj(rng, depth=0):
    r = rng.random()
    if depth > 4 or r < 0.45:
        return rng.choice([
            lambda: rng.randint(-(1 << 63), (1 << 64) - 1),
            lambda: rng.randint(-40, 200),
            lambda: rng.random() * rng.choice([1, 1e300, -1e-300]),
            lambda: float("nan"), lambda: float("inf"),
            lambda: "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 40))),
            lambda: "a\x00b",
            lambda: rng.randbytes(rng.randint(0, 64)),
            lambda: None, lambda: True, lambda: False,
            lambda: Raw(b"\xc1"),                      # never used
            lambda: Raw(bytes([0xD4 + rng.randint(0, 4)]) + rng.randbytes(17)),  # fixext
        ])()
    if r < 0.8:
        return [random_obj(rng, depth + 1) for _ in range(rng.randint(0, 18))]
    return {random_obj(rng, 5) if rng.random() < 0.5 else "k": random_obj(rng, depth + 1)
            for _ in range(rng.randint(0, 6))}


def random_message(rng):
    """A random value, or a loom-looking array with random fields."""
    if rng.random() < 0.3:
        return pack(random_obj(rng))
    mtype = rng.choice([rng.randint(0, 40), rng.randint(1, 28), rng.randint(1, 28)])
    version = PROTO if rng.random() < 0.8 else rng.choice([0, 2, -1, 255, "1", 1.0])
    fields = [random_obj(rng, 2) for _ in range(rng.randint(0, 9))]
    return pack([version, mtype, rng.choice([0, 1, (1 << 64) - 1, -1])] + fields)


def edge_messages(rng):
    """msgpack headers that lie about sizes, deep nesting, wrong types."""
    out = []
    for t in (HELLO, SUBSCRIBE, SUBMIT, TASK_DONE, OBJ_READY, PUSH, FETCH):
        head = pack(PROTO) + pack(t) + pack(1)
        n = {HELLO: 5, SUBSCRIBE: 1, SUBMIT: 3, TASK_DONE: 5, OBJ_READY: 6, PUSH: 4, FETCH: 3}[t]
        arr = bytes([0x90 | (n + 3)])
        out.append(arr + head + b"\xdd\xff\xff\xff\xff")             # array of 4G elements
        out.append(arr + head + b"\xdb\xff\xff\xff\xff" + b"x" * 10)  # str of 4G bytes
        out.append(arr + head + b"\xc6\x7f\xff\xff\xff" + b"x" * 10)  # bin of 2G bytes
        out.append(arr + head + b"\xdf\xff\xff\xff\xff")             # map of 4G pairs
        out.append(arr + head + b"\x91" * 5000 + b"\xc0")              # deep nesting
        out.append(arr + head)                                         # fields missing
        out.append(b"\xdd\xff\xff\xff\xff" + head)                     # outer array of 4G
    out.append(b"\xdc\x00\x00")                                        # empty array16
    out.append(b"\x90")                                                # []
    out.append(b"\x93\x01\x03")                                        # [1, 3, <missing>
    out.append(b"")                                                    # empty frame
    out.append(b"\x91" * 100000)                                       # very deep array
    out.append(pack([PROTO, HELLO, 1, ROLE_NODE, "0" * 64, "h", 1, [node_desc(rng)] * 2]))
    out.append(pack([PROTO, HELLO, 1, 99, "0" * 64, "h", 1, []]))     # unknown role
    out.append(pack([PROTO, HELLO, 1, ROLE_DRIVER, "0" * 64, "h", -1, []]))
    out.append(pack([PROTO, HELLO, 1, ROLE_DRIVER, "x" * 100000, "h", 1, []]))
    out.append(pack([PROTO, FETCH, 1, b"\x00" * 19, 0, 1]))          # short ref
    out.append(pack([PROTO, PUSH, 1, b"\x00" * 20, 10, 5, b"abc"]))  # offset > total
    out.append(pack([PROTO, PUSH, 1, b"\x00" * 20, 0, (1 << 64) - 1, b"abc"]))
    out.append(pack([PROTO, FETCH, 1, b"\x00" * 20, (1 << 64) - 1, (1 << 64) - 1]))
    out.append(pack([PROTO, SUBMIT, 1, "j", 1, [[b"\x00" * 16, 7] + [None] * 12]]))
    out.append(pack([PROTO, TASK_DONE, 0, b"\x00" * 20, 0, "", [[0, 10, b"abc"]], 0]))
    return out


def mutate(rng, b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        if not b:
            b += rng.randbytes(rng.randint(1, 8))
        elif op < 0.5:
            i = rng.randrange(len(b))
            b[i] = rng.choice([rng.randint(0, 255), b[i] ^ (1 << rng.randint(0, 7)), 0xFF, 0x00,
                               0xDD, 0xDB, 0xC6, 0xCF])
        elif op < 0.75:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 8)]
    return bytes(b)


# ---- ZMTP 3 ------------------------------------------------------------------


def greeting(major=3, minor=0, mechanism=b"NULL", as_server=0):
    return (b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([major, minor]) +
            mechanism.ljust(20, b"\x00")[:20] + bytes([as_server]) + b"\x00" * 31)


def command(name, body=b""):
    data = bytes([len(name)]) + name + body
    if len(data) <= 255:
        return b"\x04" + bytes([len(data)]) + data
    return b"\x06" + struct.pack(">Q", len(data)) + data


def ready(socket_type=b"DEALER", identity=None):
    props = [(b"Socket-Type", socket_type)]
    if identity is not None:
        props.append((b"Identity", identity))
    body = b"".join(bytes([len(k)]) + k + struct.pack(">I", len(v)) + v for k, v in props)
    return command(b"READY", body)


def frame(data, more=False):
    flags = 0x01 if more else 0
    if len(data) <= 255:
        return bytes([flags]) + bytes([len(data)]) + data
    return bytes([flags | 0x02]) + struct.pack(">Q", len(data)) + data


class CurvePeer(ConnectionError):
    """The target greeted with the CURVE mechanism: a plaintext (NULL) peer
    cannot get past its handshake (loom's tcp ports since issue 18)."""


class Peer:
    """One connection to a target: ("tcp", host, port) or ("ipc", path)."""

    def __init__(self, target, timeout=2.0):
        if target[0] in ("tcp", "other"):
            self.s = socket.create_connection((target[1], target[2]), timeout=timeout)
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(target[1])
        self.s.settimeout(timeout)

    def send(self, b):
        self.s.sendall(b)

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                e = ConnectionError("closed by the peer")
                e.partial = out
                raise e
            out += chunk
        return out

    def handshake(self, identity=None):
        # the signature first, then the rest: libzmq sends its mechanism only
        # once it has the peer's, and a CURVE server closes (or resets) a
        # NULL peer right after the signatures
        mine = greeting()
        self.send(mine[:10])
        sig = self.recv_exact(10)
        self.send(mine[10:])
        try:
            g = sig + self.recv_exact(54)
        except OSError as e:
            if sig[0] == 0xFF and sig[9] == 0x7F:
                raise CurvePeer("closed the NULL greeting after the signatures") from e
            raise
        if g[0] != 0xFF or g[9] != 0x7F or g[10] < 3:
            raise ConnectionError("not a ZMTP 3 greeting: %r" % g[:12])
        self.mechanism = g[12:32].rstrip(b"\0")
        if self.mechanism != b"NULL":
            raise CurvePeer("the peer speaks %s" % self.mechanism.decode("ascii", "replace"))
        self.send(ready(b"DEALER", identity))
        flags, body = self.recv_frame()
        if not flags & 0x04 or not body[1:6] == b"READY":
            raise ConnectionError("no READY from the peer")

    def recv_frame(self):
        flags = self.recv_exact(1)[0]
        if flags & 0x02:
            n = struct.unpack(">Q", self.recv_exact(8))[0]
        else:
            n = self.recv_exact(1)[0]
        if n > 64 << 20:
            raise ConnectionError("frame too large")
        return flags, self.recv_exact(n)

    def recv_message(self):
        """The next message (list of frames), skipping commands (PING, ...)."""
        frames = []
        while True:
            flags, body = self.recv_frame()
            if flags & 0x04:
                continue
            frames.append(body)
            if not flags & 0x01:
                return frames

    def close(self, reset=False):
        try:
            if reset:
                self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.s.close()
        except OSError:
            pass


def describe_reply(frames):
    try:
        v, _ = unpack(frames[-1])
        if isinstance(v, list) and len(v) >= 3 and v[1] == ERROR and len(v) >= 5:
            return "ERROR %s %s" % (v[3], v[4])
        if isinstance(v, list) and len(v) >= 2:
            return TYPE_NAMES.get(v[1], "type %r" % v[1])
        return repr(v)[:80]
    except Exception as e:  # noqa: BLE001 - report whatever came back
        return "undecodable reply (%s)" % e


def refuses_plaintext(p):
    """After a CURVE greeting: go on as a NULL peer (READY, then a HELLO);
    the server must close the connection without a message."""
    try:
        p.send(ready(b"DEALER"))
        p.send(frame(msg(HELLO, 77, ROLE_DRIVER, "", "fuzz-probe", os.getpid(), [])))
        p.recv_message()
        return False
    except (OSError, ConnectionError, ValueError):
        return True


def probe(target, secret, role=ROLE_DRIVER, timeout=3.0):
    """Handshake, HELLO with secret; the reply described, or None if none came.
    A CURVE target: "REFUSED CURVE" when it shuts a plaintext peer out."""
    p = Peer(target, timeout)
    try:
        try:
            p.handshake()
        except CurvePeer:
            return "REFUSED CURVE" if refuses_plaintext(p) else "ANSWERED a plaintext peer"
        nodes = [node_desc(random.Random(1))] if role == ROLE_NODE else []
        p.send(frame(msg(HELLO, 77, role, secret, "fuzz-probe", os.getpid(), nodes)))
        try:
            return describe_reply(p.recv_message())
        except (socket.timeout, TimeoutError):
            return None
    finally:
        p.close()


# ---- the campaign ------------------------------------------------------------


class Campaign:
    def __init__(self, targets, rng, secret, deadline, budget):
        self.targets = targets
        self.rng = rng
        self.secret = secret
        self.deadline = deadline
        self.budget = budget
        self.sent = 0
        self.refused = {t: 0 for t in targets}
        self.replies = {t: 0 for t in targets}
        self.sessions = {t: 0 for t in targets}
        self.cap = budget                # payloads allowed to the current attack
        self.by_kind = {}

    def left(self):
        return (self.sent < self.budget and self.sent < self.cap and
                time.monotonic() < self.deadline)

    def connect(self, t, timeout=2.0):
        try:
            return Peer(t, timeout)
        except ConnectionRefusedError:
            self.refused[t] += 1
            return None
        except OSError:
            return None

    def session(self, t, fn):
        """Run fn(peer) on a fresh connection; any transport error ends it."""
        if not self.left():
            return
        p = self.connect(t)
        if not p:
            return
        self.sessions[t] += 1
        try:
            fn(p)
        except (OSError, ConnectionError, ValueError, struct.error):
            pass
        finally:
            p.close(reset=self.rng.random() < 0.3)

    def payloads(self, t, p, items, want_reply=False):
        """Send each item as one message frame on an open connection."""
        for data in items:
            if not self.left():
                return
            self.sent += 1
            p.send(frame(data))
        if want_reply:
            p.s.settimeout(0.5)
            try:
                while True:
                    p.recv_message()
                    self.replies[t] += 1
            except (OSError, ConnectionError, ValueError):
                pass

    # --- attack kinds; each does a bounded amount of work on one target ---

    def k_random(self, t):
        def go(p):
            self.sent += 1
            p.send(self.rng.randbytes(self.rng.randint(1, 4096)))
        for _ in range(20):
            self.session(t, go)

    def k_greeting(self, t):
        g = greeting()
        variants = [g[:k] for k in range(0, 64, self.rng.randint(1, 7))]
        variants += [mutate(self.rng, g), greeting(major=1), greeting(major=2), greeting(major=255),
                     greeting(mechanism=b"PLAIN"), greeting(mechanism=b"CURVE"),
                     greeting(mechanism=self.rng.randbytes(20)), greeting(as_server=1),
                     b"\xff" + b"\xff" * 8 + b"\x7f" + b"\x03",            # old-style length
                     b"\x01\x00", b"\xff" * 64]
        for v in variants:
            def go(p, v=v):
                self.sent += 1
                p.send(v)
                if self.rng.random() < 0.3:
                    p.s.settimeout(0.2)
                    try:
                        p.s.recv(100)
                    except OSError:
                        pass
            self.session(t, go)

    def k_handshake(self, t):
        r = ready()
        bad = [r[:k] for k in range(0, len(r), self.rng.randint(1, 9))]
        bad += [mutate(self.rng, r), ready(b"ROUTER"), ready(b"SUB"), ready(b"BOGUS"),
                ready(b"DEALER", identity=b"\x00zero"), ready(b"DEALER", identity=b"x" * 255),
                ready(b"DEALER", identity=self.rng.randbytes(self.rng.randint(1, 40))),
                command(b"PING", b"\x00\x0a"), command(b"ERROR", b"\x03bad"),
                command(b"READY", b"\x0bSocket-Type\xff\xff\xff\xffDEALER"),
                command(b"READY", b"\xff"), b"\x04\xff" + b"\x05READY", b"\x06" + b"\xff" * 8,
                frame(b"data before ready")]
        for v in bad:
            def go(p, v=v):
                p.send(greeting())
                p.recv_exact(64)
                self.sent += 1
                p.send(v)
                if self.rng.random() < 0.5:
                    p.send(frame(msg(STATUS, 1)))
            self.session(t, go)

    def k_msgpack(self, t):
        def go(p):
            p.handshake()
            items = [random_message(self.rng) for _ in range(self.rng.randint(5, 30))]
            self.payloads(t, p, items, want_reply=True)
        self.session(t, go)

    def hello_sweep(self, t):
        """Every truncation of a HELLO (driver and node), on one connection each."""
        for hello in sample_messages(self.rng)[:2]:
            def go(p, hello=hello):
                p.handshake()
                self.payloads(t, p, [hello[:k] for k in range(len(hello))], want_reply=True)
            self.session(t, go)

    def k_truncated(self, t):
        samples = sample_messages(self.rng)
        hello = samples[0]
        # a few cuts of every message type, a few per connection
        for m in samples:
            cuts = sorted(set(self.rng.randrange(len(m)) for _ in range(6)))
            def go2(p, m=m, cuts=cuts):
                p.handshake()
                self.payloads(t, p, [m[:k] for k in cuts] + [m + b"\x00"], want_reply=False)
            self.session(t, go2)
        # a truncated frame: header promises more than comes, then hang up
        def go3(p):
            p.handshake()
            self.sent += 1
            p.send(frame(hello)[:self.rng.randint(1, len(hello))])
        self.session(t, go3)

    def k_mutated(self, t):
        samples = sample_messages(self.rng)
        def go(p):
            p.handshake()
            items = [mutate(self.rng, self.rng.choice(samples)) for _ in range(self.rng.randint(10, 40))]
            # multipart messages too: loom wants exactly one frame
            if self.rng.random() < 0.3:
                self.sent += 1
                p.send(frame(samples[3], more=True) + frame(samples[3]))
            self.payloads(t, p, items, want_reply=True)
        self.session(t, go)

    def k_edges(self, t):
        items = edge_messages(self.rng)
        def go(p):
            p.handshake()
            self.payloads(t, p, items, want_reply=True)
        self.session(t, go)

    def k_huge(self, t):
        sizes = [(1 << 63) - 1, (1 << 64) - 1, 1 << 40, (1 << 30) + 4097, 1 << 30, 64 << 20]
        for n in sizes:
            def go(p, n=n):
                p.handshake()
                self.sent += 1
                p.send(bytes([self.rng.choice([0x02, 0x03, 0x06])]) + struct.pack(">Q", n) +
                       self.rng.randbytes(self.rng.randint(0, 100)))
                time.sleep(0.01)
            self.session(t, go)
        # a huge command frame before READY
        def go2(p):
            p.send(greeting())
            p.recv_exact(64)
            self.sent += 1
            p.send(b"\x06" + struct.pack(">Q", 1 << 62) + b"\x05READY")
        self.session(t, go2)

    def k_churn(self, t):
        if not self.left():
            return
        peers = []
        for _ in range(self.rng.randint(50, 150)):
            if time.monotonic() > self.deadline:
                break
            p = self.connect(t, 1.0)
            if p:
                peers.append(p)
                self.sessions[t] += 1
                r = self.rng.random()
                try:
                    if r < 0.3:
                        p.send(greeting()[:self.rng.randint(1, 63)])
                    elif r < 0.5:
                        p.send(greeting())
                except OSError:
                    pass
        self.sent += 1
        for p in peers:
            p.close(reset=self.rng.random() < 0.5)

    def k_authed(self, t):
        if not self.secret:
            return
        rng = self.rng
        def go(p):
            p.handshake()
            p.send(frame(msg(HELLO, 1, ROLE_DRIVER, self.secret, "fuzz-authed", os.getpid(), [])))
            reqs = []
            for i in range(rng.randint(10, 30)):
                ref = rng.randbytes(20)
                reqs.append(rng.choice([
                    msg(STATUS, i),
                    msg(SUBSCRIBE, i, [rng.randbytes(20) for _ in range(rng.randint(0, 5))]),
                    msg(RELEASE, 0, [ref]),
                    msg(CANCEL, i, ref),
                    msg(JOB_INFO, i, rng.choice(["", "x" * 300, "0123456789abcdef", "\u00e9"])),
                    msg(JOB_REF, i, "0123456789abcdef", "t", rng.randint(0, 1 << 40)),
                    msg(JOB_DELETE, i, "fedcba9876543210"),
                    msg(PUT_DONE, i, ref, rng.choice([0, 3, 1 << 40]), rng.choice([0, 1, 999]), b"", 0),
                    msg(FETCH, i, ref, rng.randint(0, 1 << 63), rng.randint(0, 1 << 63)),
                    msg(PUSH, i, ref, 0, rng.randint(6, 1 << 20), b"chunk!"),
                    msg(PUSH, i, ref, 3, 4, b"x"),
                    msg(SUBMIT, i, "fuzz", 1, [wire_task(rng)]),
                    msg(TASK_DONE, 0, ref, 0, "", [], 0),
                    msg(HEARTBEAT, 0, 1, 1),
                    mutate(rng, msg(SUBSCRIBE, i, [ref])),
                    mutate(rng, msg(JOB_REF, i, "0123456789abcdef", "t", 0)),
                    msg(SUBMIT, i, "fuzz", 1, [wire_task(rng)])[:rng.randint(1, 60)],
                ]))
            self.payloads(t, p, reqs, want_reply=True)
        self.session(t, go)

    RAW_KINDS = ("random", "greeting", "churn")
    KINDS = ["random", "greeting", "handshake", "msgpack", "truncated", "mutated", "edges",
             "huge", "churn", "authed"]

    def attack(self, kind, t, cap):
        before = self.sent
        self.cap = self.sent + cap
        getattr(self, kind)(t)
        self.cap = self.budget
        self.by_kind[kind] = self.by_kind.get(kind, 0) + self.sent - before

    def run(self):
        # first every truncation of a HELLO on every target, then rounds of
        # all the attacks (shuffled), each with a share of what is left
        for t in self.targets:
            if t[0] != "other":
                self.attack("hello_sweep", t, self.budget)
        rounds = 0
        while self.sent < self.budget and time.monotonic() < self.deadline:
            share = max(10, (self.budget - self.sent) // (len(self.KINDS) * len(self.targets)))
            kinds = list(self.KINDS)
            self.rng.shuffle(kinds)
            for kind in kinds:
                if kind == "huge" and rounds > 1:
                    continue  # the big buffers are enough twice
                for t in self.targets:
                    # a port of unknown protocol gets what needs no ZMTP peer
                    if t[0] == "other" and kind not in self.RAW_KINDS:
                        continue
                    self.attack("k_" + kind, t, share)
            rounds += 1
        return rounds


def parse_target(s):
    if s.startswith("tcp:"):
        host, _, port = s[4:].rpartition(":")
        return ("tcp", host, int(port))
    if s.startswith("other:"):
        host, _, port = s[6:].rpartition(":")
        return ("other", host, int(port))
    if s.startswith("ipc:"):
        return ("ipc", s[4:])
    raise SystemExit("bad target %r (want tcp:HOST:PORT, other:HOST:PORT or ipc:PATH)" % s)


def tname(t):
    return "%s:%s" % (t[0], ":".join(str(x) for x in t[1:]))


def check_answers(targets, label):
    """A wrong-secret HELLO over a real handshake: tcp targets answer ERROR."""
    ok = True
    for t in targets:
        if t[0] == "other":
            try:
                Peer(t).close()
                print("%s: %s accepts connections" % (label, tname(t)))
            except OSError as e:
                print("FAIL %s: %s: %s" % (label, tname(t), e))
                ok = False
            continue
        try:
            r = probe(t, "f" * 64, timeout=3.0 if t[0] == "tcp" else 0.5)
        except (OSError, ConnectionError) as e:
            print("FAIL %s: %s: %s" % (label, tname(t), e))
            ok = False
            continue
        if r == "REFUSED CURVE":
            CURVE_TARGETS.add(t)
            print("%s: %s speaks CURVE and shuts out a plaintext peer" % (label, tname(t)))
        elif t[0] == "tcp" and (r is None or not r.startswith("ERROR")):
            print("FAIL %s: %s answered a wrong-secret HELLO with %r" % (label, tname(t), r))
            ok = False
        else:
            print("%s: %s answers a wrong-secret HELLO: %s" % (label, tname(t), r))
    return ok


# tcp targets found speaking CURVE: no garbage reaches their decoders, so
# they must never answer (an answer would mean a plaintext peer got in)
CURVE_TARGETS = set()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["fuzz", "hello"])
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--payloads", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--secret-file")
    ap.add_argument("--secret")
    ap.add_argument("--role", type=int, default=ROLE_DRIVER)
    a = ap.parse_args()
    targets = [parse_target(s) for s in a.target]
    if not targets:
        raise SystemExit("no --target")
    if a.command == "hello":
        r = probe(targets[0], a.secret or "", a.role)
        print(r if r is not None else "no reply")
        return 0
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    print("seed %d, %d targets, at most %d payloads in %.0f s" % (seed, len(targets), a.payloads, a.seconds))
    secret = open(a.secret_file).read().strip() if a.secret_file else None
    ok = check_answers(targets, "before")
    c = Campaign(targets, random.Random(seed), secret, time.monotonic() + a.seconds, a.payloads)
    t0 = time.monotonic()
    rounds = c.run()
    print("sent %d payloads in %d rounds, %.1f s" % (c.sent, rounds, time.monotonic() - t0))
    print("  by attack: " + ", ".join("%s %d" % (k.replace("k_", ""), n) for k, n in sorted(c.by_kind.items())))
    for t in targets:
        print("  %s: %d connections, %d replies, %d refused" %
              (tname(t), c.sessions[t], c.replies[t], c.refused[t]))
        if c.refused[t]:
            print("FAIL %s refused connections during the campaign (did it die?)" % tname(t))
            ok = False
        if t in CURVE_TARGETS and c.replies[t] != 0:
            print("FAIL %s speaks CURVE but answered a plaintext peer %d times" % (tname(t), c.replies[t]))
            ok = False
        elif t[0] == "tcp" and t not in CURVE_TARGETS and c.replies[t] == 0:
            print("FAIL %s never answered a bad message" % tname(t))
            ok = False
    time.sleep(0.5)
    ok = check_answers(targets, "after") and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
