#!/usr/bin/python3
"""tests/curve_pcap.py — read a tcpdump capture of loom's tcp ports and replay
a client's recorded CURVE handshake (standard library only; for sys_curve.sh).

  curve_pcap.py streams PCAP PORT
      one line per connection to PORT in the capture: the client's port, the
      bytes it sent, and the mechanism its ZMTP greeting named
  curve_pcap.py replay PCAP PORT HOST
      take the longest client->PORT byte stream in the capture whose greeting
      names CURVE (its greeting, HELLO, INITIATE with the vouch and metadata,
      and the encrypted messages after) and send it, byte for byte, to
      HOST:PORT on a new connection.  Prints "REFUSED read=N" when the server
      closes the connection having sent no more than its greeting and a
      WELCOME (CURVE's cookie is made per connection with a fresh key: the
      recorded INITIATE carries an old cookie the server cannot open), or
      "ACCEPTED read=N" when it keeps talking.  Exit status 0 when refused.
"""
import socket
import struct
import sys
import time


def packets(path):
    """(payload, src port, dst port, seq) of every TCP segment in the file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit("%s: not a pcap file" % path)
    link = struct.unpack(end + "I", data[20:24])[0]
    skip = {1: 14, 113: 16, 276: 20, 0: 4}.get(link)
    if skip is None:
        raise SystemExit("%s: link type %d not handled" % (path, link))
    i = 24
    while i + 16 <= len(data):
        incl = struct.unpack(end + "I", data[i + 8:i + 12])[0]
        pkt = data[i + 16:i + 16 + incl]
        i += 16 + incl
        ip = pkt[skip:]
        if len(ip) < 20:
            continue
        if ip[0] >> 4 == 4:
            if ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 15) * 4:struct.unpack(">H", ip[2:4])[0]]
        elif ip[0] >> 4 == 6:
            if len(ip) < 40 or ip[6] != 6:
                continue
            tcp = ip[40:40 + struct.unpack(">H", ip[4:6])[0]]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        yield tcp[(tcp[12] >> 4) * 4:], sport, dport, seq


def client_streams(path, port):
    """{client port: bytes it sent to port}, reassembled by sequence number."""
    segs = {}
    for payload, sport, dport, seq in packets(path):
        if dport == port and payload:
            segs.setdefault(sport, {})[seq] = payload
    out = {}
    for sport, by_seq in segs.items():
        stream, nxt = b"", None
        for seq in sorted(by_seq):
            p = by_seq[seq]
            if nxt is not None and seq < nxt:
                p = p[nxt - seq:]   # a retransmission overlapping what we have
            stream += p
            nxt = seq + len(by_seq[seq]) if nxt is None else max(nxt, seq + len(by_seq[seq]))
        out[sport] = stream
    return out


def mechanism(stream):
    if len(stream) >= 32 and stream[0] == 0xFF and stream[9] == 0x7F:
        return stream[12:32].rstrip(b"\0").decode("ascii", "replace")
    return "?"


def replay(stream, host, port, timeout=3.0):
    """Send stream; (bytes read back, closed by the server)."""
    s = socket.create_connection((host, port), timeout=timeout)
    got, closed = 0, False
    try:
        s.sendall(stream[:64])          # the greeting, then everything else
        time.sleep(0.05)
        try:
            s.sendall(stream[64:])
        except OSError:
            closed = True
        deadline = time.monotonic() + timeout
        while not closed and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not b:
                closed = True
                break
            got += len(b)
    finally:
        s.close()
    return got, closed


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "streams":
        for sport, st in sorted(client_streams(sys.argv[2], int(sys.argv[3])).items()):
            print("%d %d %s" % (sport, len(st), mechanism(st)))
        return 0
    if len(sys.argv) >= 5 and sys.argv[1] == "replay":
        port = int(sys.argv[3])
        curve = [st for st in client_streams(sys.argv[2], port).values() if mechanism(st) == "CURVE"]
        if not curve:
            print("no CURVE stream to port %d in the capture" % port)
            return 2
        st = max(curve, key=len)
        got, closed = replay(st, sys.argv[4], port)
        # a greeting (64) and a WELCOME command (a 2-byte frame header and
        # 168 bytes) is all a refused client gets
        refused = closed and got <= 64 + 2 + 168
        print("%s read=%d sent=%d" % ("REFUSED" if refused else "ACCEPTED", got, len(st)))
        return 0 if refused else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
