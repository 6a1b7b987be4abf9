#!/usr/bin/env python3
"""The fleet as it runs: hb-server instances as separate hosts sharing one Redis Cluster
(docs/fleet.md).

Usage: tests/fleet/fleet_test.py BUILD_DIR SEEDS [SCENARIO...]

SEEDS: some nodes of a running cluster on 127.0.0.1, host:port,... (examples/fleet/cluster.sh
starts one; CTest passes its fixture's). Every instance runs on a host of its own (i1..i3 for the
whole run, f1..f3, g1..g3, x1 and l1..l2 for four scenarios), started and stopped by PID,
bounded by `timeout`. The hosts are chosen at the start and named on the first line and in the
summary:

  network namespaces  (as root, when one can be made) hbf<pid>-<host>, each with a veth pair into
           a bridge hbf<pid>b in the root namespace, the bridge at 198.18.<n>.1/24 and the host at
           198.18.<n>.<11..52> (the benchmarking range; n free of other runs), lo up, a default
           route via the bridge; hb-server runs inside with `ip netns exec`. The instances cannot
           reach 127.0.0.1, so the test starts a cluster of its own on the bridge's address
           (ports $HB_FLEET_REDIS_PORT..+5, default the first seed's port + 20) in
           $HB_FLEET_WORKDIR/fleet-redis-<port>, and stops it at the end (SEEDS gives only that
           default).
  loopback addresses  127.0.0.11..13, .21..23, .31..33, .41, .51..52 against the cluster of
           SEEDS, where namespaces are not permitted (not root, no `ip`, the kernel refuses).

HB_FLEET_HOSTS=netns|loopback forces one (netns that cannot be made is a failure). The clients (the
test's own users, hb-client, hb-audit, redis-cli) stay in the root namespace. The network is
removed however the test ends (finally, atexit, SIGTERM/SIGINT), and a later run removes what a
killed one left (its namespaces, their processes, veths, bridge and cluster) once its PID is dead.
Scenarios:

  across   send-envelopes created on each instance for three recipients on three instances:
           every notice delivered, every claim granted once, repeats answered with the same
           share, a non-recipient and an unknown id refused; shares sum to each total
  lost     a claimant resets before its reply and asks again on another instance: its share
  login    the newer login wins fleet-wide: a user logging in on another instance closes its
           older connection
  ids      send-envelope ids created on all instances at once never collide
  chat     chat between users on different instances, both ways
  loginretry logins made while Redis is stopped reach the registry once it is back (retried)
  drawsafe a draw from the budget is used only once a replica has it: a master's replica stopped,
           the master SIGKILLed, the replica takes over: no envelope received twice
  generator  the fleet's one generator: the active one SIGKILLed mid-plan, the standby takes
           over within 5 s, the plan's count made exactly once
  budget   one shake budget: the generator on i1, users on all three, i3 SIGKILLed holding a
           lease (its envelopes expire); hb-audit --redis balances (it kills i3)
  failover (instances of their own, --redis-replicas 1) a claim storm; a Redis master SIGKILLed
           in it, then every node stopped 10 s (SIGSTOP), then every node shut down 10 s and
           started again: no acknowledged grant lost, none twice; a plan asked meanwhile made once
           (the cluster's nodes by $HB_TEST_REDIS_DIR and $HB_TEST_REDIS_SCRIPT, or the test's own)

Everything it starts stops by itself; traffic goes only to the test's own addresses (127.0.0.0/8,
or 198.18.<n>.0/24 on its own bridge).
"""
import atexit
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

CMD_LOGIN, CMD_LOGIN_REPLY = 0x0000, 0x0001
CMD_SHAKE, CMD_SHAKE_REPLY, SHAKE_GOT = 0x0002, 0x0003, 14
CMD_NOTICE, CMD_NOTICE_EX = 0x0004, 0x0105
CMD_CLAIM_EX, CMD_CLAIM_EX_REPLY = 0x0103, 0x0104
CMD_CHAT, CMD_CHAT_DELIVER, CMD_CHAT_REPLY = 0x0100, 0x0101, 0x0102
GRANTED, REPEAT, NOT_RECIPIENT, NO_ENVELOPE, TRY_AGAIN = 0, 1, 2, 3, 4
DEADLINE = 10.0  # seconds any one expected event may take


def frame(cmd, *fields):
    body = struct.pack(">%dI" % len(fields), *fields)
    return struct.pack(">HHQ", 12 + len(body), cmd, int(time.time())) + body


class User:
    """One user's connection: blocking socket, frames read whole."""

    def __init__(self, addr, user):
        self.user = user
        self.sock = socket.create_connection(addr, timeout=DEADLINE)
        self.buf = b""
        self.sock.sendall(frame(CMD_LOGIN, user))
        cmd, fields = self.expect(CMD_LOGIN_REPLY)
        assert fields == (user, 0), "login of %d: %r" % (user, fields)
        self.notices = []

    def read_frame(self, timeout=DEADLINE):
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 12:
                length, cmd = struct.unpack(">HH", self.buf[:4])
                if len(self.buf) >= length:
                    body, self.buf = self.buf[12:length], self.buf[length:]
                    return cmd, body
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("user %d: no frame within %.0f s" % (self.user, timeout))
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("user %d: closed by the server" % self.user)
                self.buf += data

    def expect_raw(self, want):
        """The next frame of command want, its payload's bytes; notices met are kept."""
        while True:
            cmd, body = self.read_frame()
            if cmd in (CMD_NOTICE, CMD_NOTICE_EX):
                self.notices.append(parse_notice(cmd, u32s(body)))
            if cmd == want:
                return body

    def expect(self, want):
        """The next frame of command want; notices met on the way are kept."""
        while True:
            cmd, body = self.read_frame()
            fields = u32s(body)
            if cmd in (CMD_NOTICE, CMD_NOTICE_EX):
                self.notices.append(parse_notice(cmd, fields))
                if want in (CMD_NOTICE, CMD_NOTICE_EX):
                    return cmd, fields
                continue
            if cmd == want:
                return cmd, fields

    def notice(self, envelope):
        """Wait for the notice of envelope; returns (total, recipients)."""
        end = time.time() + DEADLINE
        while time.time() < end:
            for n in self.notices:
                if n[0] == envelope:
                    return n[1], n[2]
            self.expect(CMD_NOTICE)
        raise TimeoutError("user %d: no notice of %#x" % (self.user, envelope))

    def claim(self, envelope):
        self.sock.sendall(frame(CMD_CLAIM_EX, 0, envelope))
        while True:
            _, (eid, amount, result) = self.expect(CMD_CLAIM_EX_REPLY)
            if eid == envelope:
                return result, amount

    def closed_by_server(self, timeout=DEADLINE):
        try:
            while True:
                self.read_frame(timeout)
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def close(self):
        self.sock.close()


def u32s(body):
    return struct.unpack(">%dI" % (len(body) // 4), body[:len(body) // 4 * 4])


def parse_notice(cmd, fields):
    if cmd == CMD_NOTICE:
        eid, total, count = fields[:3]
        return eid, total, list(fields[3:3 + count])
    eid, total, count = fields[:3]
    return eid, total, list(fields[3:3 + count])


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


SEEDS = ""
REDIS_HOST = "127.0.0.1"  # the cluster's nodes' address (SEEDS's host)
CLUSTER = (os.environ.get("HB_TEST_REDIS_DIR"), os.environ.get("HB_TEST_REDIS_SCRIPT"))
HOSTS = None  # LoopbackHosts or NetnsHosts, chosen by main

# The hosts instances run on, by name, each with the last byte of its address.
HOST_NAMES = {"i1": 11, "i2": 12, "i3": 13, "f1": 21, "f2": 22, "f3": 23,
              "g1": 31, "g2": 32, "g3": 33, "x1": 41, "l1": 51, "l2": 52}


class LoopbackHosts:
    """Each host a loopback address of its own; needs no root. Ports from the kernel (bind to 0)."""

    token = None
    removed = ()

    def __init__(self, why):
        self.why = why

    def address(self, name):
        return "127.0.0.%d" % HOST_NAMES[name]

    def ports(self, name):
        return free_port(self.address(name)), free_port(self.address(name))

    def command(self, name, argv):
        return argv

    def describe(self):
        return "loopback addresses 127.0.0.11..%d (%s)" % (max(HOST_NAMES.values()), self.why)

    def close(self):
        pass


NET_PREFIX = "hbf"  # hbf<pid>-<host> namespaces, hbf<pid>b the bridge, hbf<pid>v<k> veths


def ip(*args, batch=()):
    """Run `ip ARGS` (with batch, `ip ARGS -batch -` on those commands: one process for many);
    its output, or NetnsError with its complaint and the command it was about."""
    if batch:
        args += ("-batch", "-")
    out = subprocess.run(["ip"] + list(args), input="\n".join(batch) + "\n" if batch else None,
                         capture_output=True, text=True, timeout=DEADLINE)
    if out.returncode != 0:
        err = out.stderr.strip().splitlines() or [str(out.returncode)]
        line = re.match(r"Command failed -:(\d+)", err[-1])
        what = " ".join(args[:-2]) + " " + batch[int(line.group(1)) - 1] if line else " ".join(args)
        raise NetnsError("ip %s: %s" % (what.strip(), err[0]))
    return out.stdout


class NetnsError(Exception):
    pass


def our_networks():
    """{pid: tag} of every namespace, veth or bridge named by this test, by the PID of its run."""
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    names += re.findall(r"^\d+: ([^:@\s]+)", ip("-o", "link", "show"), re.M)
    found = {}
    for name in names:
        m = re.match(r"^(%s(\d+))(-|b$|v\d+$)" % NET_PREFIX, name)
        if m:
            found[int(m.group(2))] = m.group(1)
    return found


def remove_network(tag):
    """Remove every namespace, veth and bridge named tag...: the processes left in its namespaces
    first (SIGKILL by PID: only the test's instances run there), then the links, then the names."""
    spaces = [line.split()[0] for line in ip("netns", "list").splitlines()
              if line.startswith(tag + "-")]
    for ns in spaces:
        for pid in ip("netns", "pids", ns).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    links = re.findall(r"^\d+: (%s(?:v\d+|b))[@:]" % tag, ip("-o", "link", "show"), re.M)
    for link in sorted(links, key=lambda x: x.endswith("b")):  # the veths, then the bridge
        try:
            ip("link", "del", link)
        except NetnsError:
            pass  # a veth goes with its peer's namespace
    for ns in spaces:
        ip("netns", "del", ns)


def run_alive(pid):
    """Whether pid is a fleet test still running (a PID reused by another program is not)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"fleet_test" in f.read()
    except OSError:
        return False


def left_by_gone_run(pid):
    """Whether something named by run pid was left behind: that run is gone, or this process has
    its PID (it has made nothing yet when it asks)."""
    return pid == os.getpid() or not run_alive(pid)


def remove_leftovers():
    """What runs killed before their teardown left behind: their network, by its names. The tags
    removed."""
    gone = [tag for pid, tag in our_networks().items() if left_by_gone_run(pid)]
    for tag in gone:
        remove_network(tag)
    return gone


def claim_subnet():
    """A /24 of 198.18.0.0/16 that no interface here uses and no other run holds (an abstract Unix
    socket bound for as long as this process lives): (the socket, n)."""
    used = set(re.findall(r"inet 198\.18\.(\d+)\.", ip("-4", "-o", "addr", "show")))
    for i in range(256):
        n = (os.getpid() + i) % 256
        if str(n) in used:
            continue
        lock = socket.socket(socket.AF_UNIX)
        try:
            lock.bind("\0hongbao-fleet-test-198.18.%d" % n)
            return lock, n
        except OSError:
            lock.close()
    raise NetnsError("no free 198.18.n.0/24")


class NetnsHosts:
    """Each host a network namespace of its own on a bridge this test makes (the docstring at the
    top). A host's ports are its own, so fixed; its control port is not loopback, so hb-server
    wants a token for it."""

    LISTEN, CONTROL = 9100, 9101
    removed = ()  # the tags of killed runs' networks removed before this one was made

    def __init__(self):
        self.tag = "%s%d" % (NET_PREFIX, os.getpid())
        self.bridge = self.tag + "b"
        self.token = secrets.token_hex(16)
        start = time.time()
        self.lock, self.n = claim_subnet()
        self.gateway = "198.18.%d.1" % self.n
        try:  # one `ip` for the root namespace's part, one for each host's inside
            outside = ["link add %s type bridge" % self.bridge,
                       "addr add %s/24 dev %s" % (self.gateway, self.bridge),
                       "link set %s up" % self.bridge]
            for name, k in HOST_NAMES.items():
                ns, veth = self.namespace(name), "%sv%d" % (self.tag, k)
                outside += ["netns add " + ns,
                            "link add %s type veth peer name eth0 netns %s" % (veth, ns),
                            "link set %s master %s up" % (veth, self.bridge)]
            ip(batch=outside)
            for name in HOST_NAMES:
                ip("-n", self.namespace(name), batch=[
                    "addr add %s/24 dev eth0" % self.address(name), "link set eth0 up",
                    "link set lo up", "route add default via " + self.gateway])
            ip("netns", "exec", self.namespace(name), "true")  # as the instances will start
        except BaseException:
            self.close()
            raise
        self.seconds = time.time() - start

    def namespace(self, name):
        return "%s-%s" % (self.tag, name)

    def address(self, name):
        return "198.18.%d.%d" % (self.n, HOST_NAMES[name])

    def ports(self, name):
        return self.LISTEN, self.CONTROL

    def command(self, name, argv):
        return ["ip", "netns", "exec", self.namespace(name)] + argv

    def describe(self):
        names = list(HOST_NAMES)
        return "network namespaces %s..%s (%d) on bridge %s %s/24, made in %.1f s" % (
            self.namespace(names[0]), names[-1], len(names), self.bridge,
            self.gateway[:-1] + "0", self.seconds)

    def close(self):
        if self.lock is not None:
            remove_network(self.tag)
            self.lock.close()
            self.lock = None


def choose_hosts():
    """Namespaces if this process may make them, else loopback addresses; HB_FLEET_HOSTS forces."""
    want = os.environ.get("HB_FLEET_HOSTS", "")
    if want not in ("", "netns", "loopback"):
        print("fleet_test: HB_FLEET_HOSTS is netns or loopback, not %r" % want, file=sys.stderr)
        sys.exit(2)
    gone, hosts = [], None
    if os.geteuid() != 0:
        why = "not root"
    elif not shutil.which("ip"):
        why = "no ip command (iproute2)"
    else:
        try:
            gone = remove_leftovers()
            if want == "loopback":
                why = "HB_FLEET_HOSTS=loopback"
            else:
                hosts = NetnsHosts()
        except NetnsError as e:
            why = str(e)
    if hosts is None and want == "netns":
        sys.exit("fleet_test: HB_FLEET_HOSTS=netns, but namespaces are not permitted: " + why)
    if hosts is None:
        hosts = LoopbackHosts(why if want == "loopback" else "namespaces not permitted: " + why)
    hosts.removed = gone
    return hosts


class OwnCluster:
    """The test's own Redis Cluster in DIR, on the bridge's address (namespace mode: the instances
    cannot reach the fixture's on 127.0.0.1), started and stopped by examples/fleet/cluster.sh by
    its PIDs. DIR.owner names the run that started it: a later run stops it if that run is gone
    (start_or_clean), in either mode."""

    def __init__(self, script, cdir):
        self.script, self.dir, self.owner = script, cdir, cdir + ".owner"
        try:
            with open(self.owner) as f:
                self.owner_pid = int(f.read())
        except (OSError, ValueError):
            self.owner_pid = None

    def start_or_clean(self, host, base):
        """Start it on host:base..base+5 (host None: only stop it if a gone run left it)."""
        if self.owner_pid is not None and not left_by_gone_run(self.owner_pid):
            raise RuntimeError("%s is the cluster of the fleet test running as PID %d"
                               % (self.dir, self.owner_pid))
        if host is None:
            if self.owner_pid is not None:
                self.stop()
            return
        with open(self.owner, "w") as f:  # `start` stops what a gone run left in self.dir
            f.write("%d\n" % os.getpid())
        env = dict(os.environ, HB_REDIS_HOST=host)
        try:
            out = subprocess.run(["bash", self.script, "start", self.dir, str(base)], env=env,
                                 capture_output=True, text=True, timeout=150)
            if out.returncode != 0:
                raise RuntimeError("the test's cluster did not start: " + out.stderr.strip())
        except BaseException:
            self.stop()
            raise
        with open(os.path.join(self.dir, "seeds")) as f:
            self.seeds = f.read().strip()

    def stop(self):
        subprocess.run(["bash", self.script, "stop", self.dir], capture_output=True, timeout=60)
        try:
            os.unlink(self.owner)
        except OSError:
            pass


def redis_cli(*args):
    """The answer of a command to the test's cluster; an answer that is a cluster's transient
    error (a failover under way) is asked again, for up to DEADLINE."""
    host, port = SEEDS.split(",")[0].rsplit(":", 1)
    end = time.time() + DEADLINE
    while True:
        out = subprocess.run(["redis-cli", "-c", "-h", host, "-p", port] + list(args),
                             capture_output=True, timeout=DEADLINE)
        text = out.stdout.decode(errors="replace").strip()
        if not text.startswith(("CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN")) or \
                time.time() > end:
            return text
        time.sleep(0.1)


def cluster_ports(cdir):
    """The ports of the nodes of the cluster examples/fleet/cluster.sh keeps in cdir."""
    return open(os.path.join(cdir, "ports")).read().split()


def node_pid(cdir, port):
    """The PID of the cluster's node on port (redis-server itself)."""
    return open(os.path.join(cdir, port, "redis.pid")).read().strip()


def node_cli(port, *args):
    """The answer of one node (no redirection) to a command, as text."""
    return subprocess.run(["redis-cli", "-h", REDIS_HOST, "-p", port] + list(args),
                          capture_output=True, text=True, timeout=DEADLINE).stdout


def await_registered(users):
    """Wait until the fleet's registry names each user's instance: a login reaches it a moment
    after its reply (docs/fleet.md), and a notice finds only users it names."""
    end = time.time() + DEADLINE
    for user, inst in users:
        while redis_cli("HGET", "hb:{u:%d}" % user, "i") != inst.name:
            if time.time() > end:
                raise TimeoutError("user %d never registered on %s" % (user, inst.name))
            time.sleep(0.02)


class Instance:
    """hb-server on the host of its name (HOSTS): under `timeout`, inside the host's namespace in
    namespace mode (`ip netns exec` execs `timeout`, which keeps the Popen's PID)."""

    def __init__(self, build, name, workdir, extra=()):
        self.name, self.host = name, HOSTS.address(name)
        host = self.host
        self.port, self.control = HOSTS.ports(name)
        self.log = open(os.path.join(workdir, name + ".log"), "w")
        token = ["--control-token", HOSTS.token] if HOSTS.token else []
        self.proc = subprocess.Popen(HOSTS.command(name, [
            "timeout", "--signal=KILL", "600", os.path.join(build, "examples", "hb-server"),
            "--listen", "%s:%d" % (host, self.port), "--control", "%s:%d" % (host, self.control),
            "--redis", SEEDS, "--instance", name, "--threads", "1", "--nic", "off",
            "--redis-lease", "1500"] + token + list(extra)),
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + DEADLINE
        while time.time() < end:
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("%s exited: see %s" % (name, self.log.name))
                time.sleep(0.05)
        else:
            self.stop()  # no one else holds it to stop it
            raise TimeoutError("%s did not listen within %.0f s" % (name, DEADLINE))

    def addr(self):
        return (self.host, self.port)

    def get(self, path):
        req = urllib.request.Request("http://%s:%d%s" % (self.host, self.control, path))
        if HOSTS.token:
            req.add_header("Authorization", "Bearer " + HOSTS.token)
        with urllib.request.urlopen(req, timeout=DEADLINE) as r:
            return r.read().decode()

    def send_envelope(self, users):
        """One send-envelope to exactly these three consecutive users (min..max is all of them)."""
        lo, hi = min(users), max(users)
        assert hi - lo == 2
        self.get("/fahongbao?qps=1&sum=1&min=%d&max=%d" % (lo, hi))

    def server_pid(self):
        """hb-server's PID: the only child of the `timeout` that bounds it."""
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            pid = int(f.read().split()[0])
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == "hb-server", "%s: PID %d is not hb-server" % (self.name, pid)
        return pid

    def kill(self):
        """SIGKILL to hb-server itself, as a machine that dies: nothing reported, nothing given
        back. (Its `timeout` then ends too, having lost its child.)"""
        os.kill(self.server_pid(), 9)
        self.proc.wait()
        self.killed = True

    def stop(self):
        if getattr(self, "killed", False):
            self.log.close()
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def scenario_across(inst):
    """Three recipients on three instances; envelopes created on each instance in turn."""
    base = 1000
    users = {}
    for k, i in enumerate(inst):
        users[base + k] = User(i.addr(), base + k)
    outsider = User(inst[0].addr(), base + 3)
    await_registered([(base + k, i) for k, i in enumerate(inst)])
    seen = set()
    for round_ in range(6):
        creator = inst[round_ % len(inst)]
        creator.send_envelope(list(users))
        # Every recipient hears of the same new envelope, wherever it is.
        notices = {}
        for u, conn in users.items():
            end = time.time() + DEADLINE
            while True:
                fresh = [n for n in conn.notices if n[0] not in seen]
                if fresh:
                    notices[u] = fresh[0]
                    break
                if time.time() > end:
                    raise TimeoutError("user %d: no notice of round %d" % (u, round_))
                try:
                    conn.expect(CMD_NOTICE)
                except TimeoutError:
                    raise TimeoutError("user %d on %s: no notice in round %d (creator %s)"
                                       % (u, inst[u - base].name, round_, creator.name))
        ids = {n[0] for n in notices.values()}
        assert len(ids) == 1, "recipients heard of different envelopes: %r" % notices
        eid = ids.pop()
        seen.add(eid)
        total = notices[base][1]
        assert sorted(notices[base][2]) == sorted(users), notices[base]
        shares = 0
        for u, conn in users.items():
            result, amount = conn.claim(eid)
            assert result == GRANTED and amount > 0, "user %d claim: %d %d" % (u, result, amount)
            again = conn.claim(eid)
            assert again == (REPEAT, amount), "user %d repeat: %r, granted %d" % (u, again, amount)
            shares += amount
        assert shares == total, "shares %d, total %d" % (shares, total)
        assert outsider.claim(eid) == (NOT_RECIPIENT, 0)
    assert users[base].claim(max(seen) + 1000) == (NO_ENVELOPE, 0)
    for conn in list(users.values()) + [outsider]:
        conn.close()
    print("across: %d envelopes, 3 recipients on 3 instances, notices, grants, repeats: ok"
          % len(seen))


def scenario_lost(inst):
    """A claimant that sends its claim and leaves at once, without reading (its reply is lost),
    then logs in again on another instance and asks again: it learns its share (a repeat, or the
    grant if the first never reached Redis), and the three shares still add up to the total."""
    users = [7000, 7001, 7002]
    conns = [User(inst[k].addr(), u) for k, u in enumerate(users)]
    await_registered([(u, inst[k]) for k, u in enumerate(users)])
    inst[1].send_envelope(users)
    for c in conns:
        c.expect(CMD_NOTICE)
    eid, total = conns[0].notices[0][0], conns[0].notices[0][1]
    gone = conns[0]
    gone.sock.sendall(frame(CMD_CLAIM_EX, 0, eid))
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.sock.close()  # a reset: whatever the reply, it is lost
    again = User(inst[2].addr(), users[0])
    await_registered([(users[0], inst[2])])
    result, share = again.claim(eid)
    assert result in (GRANTED, REPEAT) and share > 0, "the retry: %d %d" % (result, share)
    assert again.claim(eid) == (REPEAT, share)
    shares = share + sum(c.claim(eid)[1] for c in conns[1:])
    assert shares == total, "shares %d, total %d" % (shares, total)
    for c in [again] + conns[1:]:
        c.close()
    print("lost: a claimant reset before its reply, asked again elsewhere: %s with its share; "
          "shares add up to the total: ok" % ("a repeat" if result == REPEAT else "the grant"))


def scenario_login(inst):
    # "Newer" is the later to reach the fleet's registry: each login is awaited there first.
    user = 2000
    first = User(inst[0].addr(), user)
    await_registered([(user, inst[0])])
    second = User(inst[1].addr(), user)
    await_registered([(user, inst[1])])
    assert first.closed_by_server(), "the older connection on %s was not closed" % inst[0].name
    # And back again: the newer login wins whatever the order of instances.
    third = User(inst[0].addr(), user)
    await_registered([(user, inst[0])])
    assert second.closed_by_server(), "the older connection on %s was not closed" % inst[1].name
    third.close()
    print("login: the newer login wins across instances: ok")


def scenario_ids(inst):
    """Send-envelopes from every instance at once: every id once."""
    users = [3000, 3001, 3002]
    conns = [User(inst[k].addr(), u) for k, u in enumerate(users)]
    await_registered([(u, inst[k]) for k, u in enumerate(users)])
    per = 20
    for i in inst:
        i.get("/fahongbao?qps=200&sum=%d&min=%d&max=%d" % (per, users[0], users[-1]))
    ids = []
    end = time.time() + DEADLINE
    while len(conns[0].notices) < per * len(inst) and time.time() < end:
        conns[0].expect(CMD_NOTICE)
    ids = [n[0] for n in conns[0].notices]
    assert len(ids) == per * len(inst), "heard of %d of %d" % (len(ids), per * len(inst))
    assert len(set(ids)) == len(ids), "an id was used twice"
    for c in conns:
        c.close()
    print("ids: %d send-envelopes from %d instances at once, every id once: ok"
          % (len(ids), len(inst)))


def scenario_chat(inst):
    """Chat between users on different instances, both ways."""
    a, b = User(inst[0].addr(), 4000), User(inst[2].addr(), 4001)
    await_registered([(4000, inst[0]), (4001, inst[2])])
    for src, dst, text in ((a, b, b"hello from i1"), (b, a, b"and back from i3")):
        src.sock.sendall(struct.pack(">HHQI", 12 + 4 + len(text), CMD_CHAT, int(time.time()),
                                     dst.user) + text)
        reply = u32s(src.expect_raw(CMD_CHAT_REPLY))
        assert reply == (dst.user, 0), "chat reply %r" % (reply,)
        body = dst.expect_raw(CMD_CHAT_DELIVER)
        assert u32s(body[:4])[0] == src.user and body[4:] == text, "delivered %r" % body
    a.close()
    b.close()
    print("chat: delivered across instances both ways: ok")


def client(build, inst, first, count, total, qps, seconds, workdir, name):
    """An hb-client of users first..first+count-1 of a fleet of total users shaking qps in all
    (this process sends its users' share), on one instance, bounded."""
    log = open(os.path.join(workdir, name + ".log"), "w")
    return subprocess.Popen(
        ["timeout", "--signal=KILL", str(seconds + 30), os.path.join(build, "examples", "hb-client"),
         "--server", "%s:%d" % inst.addr(), "--min", str(first), "--max", str(first + count - 1),
         "--total", str(total), "--qps", str(qps), "--duration", str(seconds), "--control", "off"],
        stdout=log, stderr=subprocess.STDOUT), log


def summary(log):
    """The key=value summary line an hb-client prints last."""
    with open(log.name) as f:
        for line in f:
            if line.startswith("summary: "):
                return dict(kv.split("=", 1) for kv in line.split()[1:])
    raise RuntimeError("no summary in %s" % log.name)


def audit(build):
    out = subprocess.run([os.path.join(build, "examples", "hb-audit"), "--json", "--redis", SEEDS],
                         capture_output=True, timeout=120)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def scenario_budget(inst, build, workdir):
    """One budget for the fleet: the generator on i1 feeds it, users on every instance shake it
    empty, i3 is SIGKILLed holding a lease (its envelopes expire), the others stop cleanly
    (what they hold goes back); the audit then balances, every envelope in one place."""
    import json
    before = json.loads(audit(build)[1])["shake"]
    rate, seconds = 500, 6
    inst[0].get("/yaohongbao?qps=%d&sum=%d" % (rate, rate * seconds))
    # Users shake slower than the generator makes envelopes: every bucket holds some, i3's too.
    clients = [client(build, i, 300 * k, 300, 900, 300, seconds + 2, workdir, "budget-c%d" % k)
               for k, i in enumerate(inst)]
    time.sleep(seconds / 2)
    inst[2].kill()
    for proc, _ in clients:
        proc.wait()
    received = sum(int(summary(log)["envelopes"]) for _, log in clients[:2])
    for _, log in clients:
        log.close()
    # The survivors draw again after i3's lease ran out: that draw retires what it held.
    time.sleep(2)
    inst[0].get("/yaohongbao?qps=10&sum=1")
    time.sleep(1)
    rc, out, err = audit(build)
    assert rc == 0, "hb-audit --redis: exit %d: %s %s" % (rc, out, err)
    after = json.loads(out)["shake"]
    d = {k: after[k] - before.get(k, 0) for k in after}
    assert d["generated"] == rate * seconds + 1, "generated %d" % d["generated"]
    assert d["generated"] == d["queued"] + d["leased"] + d["handed_out"] + d["expired"]
    assert d["expired"] > 0, "i3's lease did not expire: %r" % d
    assert received <= d["handed_out"] + d["expired"]
    # The audit sees a broken book: a grant that is not its recipient's share.
    eid = int(redis_cli("HGET", "hb:{ids}", "send"))
    while redis_cli("EXISTS", "hb:{e:%d}" % eid) != "1":
        eid -= 1
    key = "hb:{e:%d}" % eid
    redis_cli("HINCRBY", key, "a", "1")
    rc, out, err = audit(build)
    redis_cli("HINCRBY", key, "a", "-1")
    assert rc == 1 and "a is not the amount granted" in out + err, (rc, out, err)
    assert audit(build)[0] == 0
    print("budget: %d generated = %d handed out + %d expired + %d queued + %d leased; "
          "clients of i1 and i2 got %d; hb-audit balanced: ok"
          % (d["generated"], d["handed_out"], d["expired"], d["queued"], d["leased"], received))


class Storm:
    """Users that claim every notice they hear of until each claim has a final answer, retrying
    "try again" after a pause; acknowledged grants and repeats recorded (envelope, user) -> share."""

    def __init__(self, inst, users):
        self.users = {u: User(inst[u % len(inst)].addr(), u) for u in users}
        for c in self.users.values():
            c.sock.setblocking(False)
        self.acked = {}      # (envelope, user) -> share
        self.final = {}      # (envelope, user) -> result, for NOT_RECIPIENT / NO_ENVELOPE
        self.waiting = {}    # (envelope, user) -> time to (re)send, or None while sent
        self.try_again = 0
        self.mismatch = []

    def pump(self, seconds):
        end = time.time() + seconds
        by_fd = {c.sock.fileno(): c for c in self.users.values()}
        while time.time() < end:
            now = time.time()
            for (eid, u), when in list(self.waiting.items()):
                if when is not None and when <= now:
                    self.users[u].sock.sendall(frame(CMD_CLAIM_EX, 0, eid))
                    self.waiting[(eid, u)] = None
            r, _, _ = select.select(list(by_fd), [], [], 0.02)
            for fd in r:
                c = by_fd[fd]
                data = c.sock.recv(65536)
                if not data:
                    raise ConnectionError("user %d: closed by the server" % c.user)
                c.buf += data
                while len(c.buf) >= 12:
                    length, cmd = struct.unpack(">HH", c.buf[:4])
                    if len(c.buf) < length:
                        break
                    body, c.buf = c.buf[12:length], c.buf[length:]
                    f = u32s(body)
                    if cmd in (CMD_NOTICE, CMD_NOTICE_EX):
                        if (f[0], c.user) not in self.acked and (f[0], c.user) not in self.final:
                            self.waiting.setdefault((f[0], c.user), 0)
                    elif cmd == CMD_CLAIM_EX_REPLY:
                        key, (amount, result) = (f[0], c.user), (f[1], f[2])
                        if result in (GRANTED, REPEAT):
                            if key in self.acked and self.acked[key] != amount:
                                self.mismatch.append((key, self.acked[key], amount))
                            self.acked[key] = amount
                            self.waiting.pop(key, None)
                        elif result == TRY_AGAIN:
                            self.try_again += 1
                            self.waiting[key] = time.time() + 0.05
                        else:
                            self.final[key] = result
                            self.waiting.pop(key, None)

    def close(self):
        for c in self.users.values():
            c.sock.close()


def scenario_failover(inst, build, workdir):
    """A claim storm over three instances acknowledging a grant only once a replica has it
    (--redis-replicas 1), a Redis master SIGKILLed in the middle of it; then the whole cluster
    stopped (SIGSTOP) for 10 s and resumed; then every node shut down for 10 s and started again
    from its files, a shake plan asked meanwhile. After all: every acknowledged grant is in Redis
    with its share, none granted twice (the same share every time it was answered), hb-audit
    balanced, the plan made exactly once."""
    cdir, script = CLUSTER
    if not cdir or not script:
        print("failover: skipped (HB_TEST_REDIS_DIR, HB_TEST_REDIS_SCRIPT not given)")
        return
    inst = [Instance(build, "f%d" % (k + 1), workdir, ["--redis-replicas", "1"])
            for k in range(3)]
    try:
        failover_storm(inst, build, cdir, script)
    finally:
        for i in inst:
            i.stop()


def failover_storm(inst, build, cdir, script):
    storm = Storm(inst, range(5000, 5300))
    await_registered([(u, inst[u % len(inst)]) for u in range(5000, 5300)])
    for i in inst:
        i.get("/fahongbao?qps=300&sum=1200&min=5000&max=5299")  # 2,700 claims/s for 4 s
    storm.pump(1.5)
    before_kill = len(storm.acked)
    # The master that holds the first envelope acknowledged dies.
    eid = min(e for e, _ in storm.acked)
    victim = None
    for port in cluster_ports(cdir):
        role = node_cli(port, "ROLE").split()
        has = node_cli(port, "EXISTS", "hb:{e:%d}" % eid).strip()
        if role[:1] == ["master"] and has == "1":
            victim = port
    assert victim, "no master holds envelope %d" % eid
    subprocess.run(["bash", script, "kill", cdir, victim], check=True, timeout=30)
    storm.pump(8)  # its replica takes over; with no replica left, grants there wait ("try again")
    # It comes back as the new master's replica: WAIT 1 can be met again there.
    subprocess.run(["bash", script, "restart", cdir, victim], check=True, timeout=120)
    storm.pump(3)
    # Every node stopped for 10 s: nothing answers, then everything does again.
    pids = [node_pid(cdir, p) for p in cluster_ports(cdir)]
    subprocess.run(["kill", "-STOP"] + pids, check=True)
    storm.pump(10)
    subprocess.run(["kill", "-CONT"] + pids, check=True)
    storm.pump(3)
    # Every node shut down (SIGTERM) for 10 s and started again from its files. A shake plan asked
    # meanwhile is kept by its instance and stored once Redis is back (made once: 400 envelopes).
    gen_base = generated_total()
    subprocess.run(["bash", script, "stop", cdir], check=True, timeout=60)
    stopped_at = time.time()
    inst[0].get("/yaohongbao?qps=200&sum=400")
    storm.pump(10 - (time.time() - stopped_at))
    subprocess.run(["bash", script, "restart", cdir], check=True, timeout=120)
    end = time.time() + 40
    while (storm.waiting or generated_total() - gen_base < 400) and time.time() < end:
        storm.pump(1)
    storm.pump(0.5)
    made = generated_total() - gen_base
    pending = dict(storm.waiting)
    storm.close()
    if pending:
        import json
        for i in inst:
            c = json.loads(i.get("/stats"))["counters"]["cumulative"]
            print("%s: claims read %d, answered %d, store errors %d" % (
                i.name, c.get("frame_claim", 0), c.get("frame_claim_reply", 0),
                c.get("store_errors", 0)))
    # Read back once the cluster is whole again: a read in a failover's window answers an error
    # (CLUSTERDOWN, TRYAGAIN), which is not a missing grant.
    subprocess.run(["bash", script, "wait", cdir], check=True, timeout=90)
    missing = [(k, a) for k, a in storm.acked.items()
               if redis_cli("HGET", "hb:{e:%d}" % k[0], "g:%d" % k[1]) != str(a)]
    rc, out, err = audit(build)
    assert not storm.mismatch, "answered different shares: %r" % storm.mismatch[:5]
    assert not missing, "%d acknowledged grants missing after the failover: %r" % (
        len(missing), missing[:5])
    assert not [k for k, r in storm.final.items() if r == NO_ENVELOPE], "a notified envelope lost"
    assert rc == 0, "hb-audit --redis: exit %d: %s %s" % (rc, out, err)
    assert not pending, "%d claims never answered for good (%d of them sent and not answered)" % (
        len(pending), sum(1 for v in pending.values() if v is None))
    assert made == 400, "the plan asked while Redis was down made %d of 400 envelopes" % made
    print("failover: %d grants acknowledged (%d before the master %s was SIGKILLed), %d 'try "
          "again' answers, the cluster stopped (SIGSTOP) 10 s and resumed, then shut down 10 s "
          "and started again; 0 acknowledged grants missing, 0 answered twice with different "
          "shares, hb-audit balanced; the plan asked while it was down made %d of 400: ok"
          % (len(storm.acked), before_kill, victim, storm.try_again, made))


def generated_total():
    """The budget's generated count, from the partitions' counters."""
    return sum(int(redis_cli("HGET", "hb:{b:%d}:c" % p, "g") or 0) for p in range(16))


def holder():
    return redis_cli("GET", "hb:{gen}:lease")


def scenario_generator(inst, build, workdir):
    """The fleet's one generator: two instances may be it (--generator), a third sets the plan;
    the active one is SIGKILLed mid-plan and the standby takes over within 5 s; the plan's count is
    made exactly once over both, and hb-audit balances."""
    gens = [Instance(build, "g%d" % (k + 1), workdir, ["--generator"] if k < 2 else [])
            for k in range(3)]
    try:
        base = generated_total()
        rate, count = 400, 2400
        gens[2].get("/yaohongbao?qps=%d&sum=%d" % (rate, count))
        # Whoever may be the generator (g1, g2, and i1 of the other scenarios) races for it.
        able = {i.name: i for i in gens[:2] + [inst[0]] if not getattr(i, "killed", False)}
        end = time.time() + DEADLINE
        while holder() not in able or generated_total() - base < rate:
            assert time.time() < end, "no generator made the plan's envelopes"
            time.sleep(0.05)
        active = able[holder()]
        active.kill()
        killed_at, made_then = time.time(), generated_total()
        while generated_total() <= made_then + 1 or holder() in ("", active.name):
            assert time.time() - killed_at < 5, "no standby took over within 5 s"
            time.sleep(0.05)
        standby = able[holder()]
        took = time.time() - killed_at
        end = time.time() + count / rate + DEADLINE
        while generated_total() - base < count and time.time() < end:
            time.sleep(0.1)
        time.sleep(0.5)
        made = generated_total() - base
        assert made == count, "the plan of %d made %d shake envelopes" % (count, made)
        rc, out, err = audit(build)
        assert rc == 0, "hb-audit --redis: exit %d: %s %s" % (rc, out, err)
        print("generator: %s SIGKILLed mid-plan, %s made the plan's envelopes again %.1f s later; "
              "%d of %d made, once each; hb-audit balanced: ok"
              % (active.name, standby.name, took, made, count))
    finally:
        for i in gens:
            i.stop()


def master_of(cdir, key):
    """(port of the master that serves key, port of its replica)."""
    slot = None
    for port in cluster_ports(cdir):
        out = node_cli(port, "CLUSTER", "KEYSLOT", key).strip()
        if out.isdigit():
            slot = int(out)
            break
    for port in cluster_ports(cdir):
        role = node_cli(port, "ROLE").split()
        if role[:1] != ["master"] or len(role) < 4:
            continue
        nodes = node_cli(port, "CLUSTER", "NODES")
        mine = [ln for ln in nodes.splitlines() if "myself" in ln][0].split()[8:]
        for rng in mine:
            lo, _, hi = rng.partition("-")
            if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                return port, role[3]
    raise RuntimeError("no master serves %s" % key)


def replicated(port):
    """The master on port and its replica have the same replication offset."""
    role = node_cli(port, "ROLE").split()
    return len(role) >= 5 and role[1] == role[4]


def shake_for(users, seconds, got, stamps=None):
    """Every user shakes once per round, 50 rounds a second, for seconds; envelope ids received
    are appended to got (and (time, id) to stamps)."""
    end = time.time() + seconds
    while time.time() < end:
        start = time.time()
        for u in users:
            u.sock.sendall(frame(CMD_SHAKE, u.user))
        for u in users:
            while True:
                cmd, body = u.read_frame()
                if cmd == CMD_SHAKE_REPLY:
                    break
                if cmd in (CMD_NOTICE, CMD_NOTICE_EX):
                    u.notices.append(parse_notice(cmd, u32s(body)))
            _, result, eid, _ = u32s(body)
            if result == SHAKE_GOT:
                got.append(eid)
                if stamps is not None:
                    stamps.append((time.time(), eid))
        time.sleep(max(0.0, 0.02 - (time.time() - start)))


def scenario_drawsafe(inst, build, workdir):
    """A draw from the budget is used only once a replica has it (--redis-replicas 1): with the
    replica of one master stopped, shakes on an instance get no envelope of that master's
    partitions (its draws are not acknowledged by a replica); the master is then SIGKILLed and the
    stopped replica, resumed, takes over without those draws; the envelopes go on. No envelope id
    is received twice, hb-audit balances. (Without the rule, envelopes of a draw the failover
    lost were handed out, drawn again from the queue and handed out a second time: found by
    hb-audit in the million as one fleet, whose loaded Redis failed over by itself.)"""
    cdir, script = CLUSTER
    if not cdir or not script:
        print("drawsafe: skipped (HB_TEST_REDIS_DIR, HB_TEST_REDIS_SCRIPT not given)")
        return
    for i in inst:  # x1 alone draws from the budget from here on
        if not getattr(i, "killed", False):
            i.stop()
    x = Instance(build, "x1", workdir, ["--redis-replicas", "1", "--generator"])
    users = []
    try:
        users = [User(x.addr(), 7000 + k) for k in range(20)]
        base, count = generated_total(), 6000
        x.get("/yaohongbao?qps=3000&sum=%d" % count)
        end = time.time() + 2 * DEADLINE
        while generated_total() - base < count:
            assert time.time() < end, "the plan of %d was not made" % count
            time.sleep(0.05)
        got = []
        shake_for(users, 1, got)  # x1 draws, from every partition in turn
        master, replica = master_of(cdir, "hb:{b:0}:q")
        # The partitions that master serves: once what x1 held when the replica stopped is gone (a
        # bucket and a draw: 1 s is ample), none of their envelopes may come until it is back.
        theirs = {p for p in range(16) if master_of(cdir, "hb:{b:%d}:q" % p)[0] == master}
        end = time.time() + DEADLINE
        while not replicated(master):
            assert time.time() < end, "master %s never caught up with its replica" % master
            time.sleep(0.05)
        rpid = node_pid(cdir, replica)
        os.kill(int(rpid), signal.SIGSTOP)
        before, stamps = len(got), []
        stopped_at = time.time()
        try:
            # Send-envelopes created meanwhile: those whose slot is on that master wait for a
            # replica, and are announced once the promoted replica has them (created again).
            x.get("/fahongbao?qps=12&sum=12&min=7000&max=7019")
            shake_for(users, 3, got, stamps)
            subprocess.run(["bash", script, "kill", cdir, master], check=True, timeout=30)
        finally:
            os.kill(int(rpid), signal.SIGCONT)
        late = [e for t, e in stamps if t > stopped_at + 1 and 0x100000 <= e <= 0x1FFFFF
                and (e - 0x100000) % 16 in theirs]
        during = len(got) - before
        subprocess.run(["bash", script, "wait", cdir], check=True, timeout=90)
        shake_for(users, 8, got)
        # Back as the new master's replica: WAIT 1 can be met there again.
        subprocess.run(["bash", script, "restart", cdir, master], check=True, timeout=120)
        heard = lambda: {n[0] for u in users for n in u.notices}  # noqa: E731
        end = time.time() + 2 * DEADLINE
        while len(heard()) < 12 and time.time() < end:
            shake_for(users, 1, got)
        told = sum(len(u.notices) for u in users)
        twice = sorted(e for e in set(got) if got.count(e) > 1)
        assert len(heard()) == 12 and told == 36, (
            "of 12 send-envelopes created while a replica was stopped, %d announced (%d notices)"
            % (len(heard()), told))
        assert not late, ("%d envelopes of %s's partitions %s handed out while its replica was "
                          "stopped (draws no replica had): %r" % (len(late), master, sorted(theirs),
                                                                   late[:5]))
        for u in users:
            u.close()
        users = []
        assert x.stop() == 0, "x1 did not stop cleanly"
        rc, out, err = audit(build)
        assert not twice, "%d envelope ids received twice: %r" % (len(twice), twice[:5])
        assert rc == 0, "hb-audit --redis: exit %d: %s %s" % (rc, out, err)
        print("drawsafe: the replica of %s stopped (%d envelopes received meanwhile), the master "
              "SIGKILLed, the replica took over: %d envelopes received in all, none twice; 12 "
              "send-envelopes created meanwhile all announced; hb-audit balanced: ok"
              % (master, during, len(got)))
    finally:
        for u in users:
            u.close()
        x.stop()


def scenario_loginretry(inst, build, workdir):
    """A login the registry could not take in time (every Redis node stopped for 2 s, the
    instances' deadline 0.5 s) is sent again until it lands: the users are then found by a notice
    from another instance."""
    cdir = CLUSTER[0]
    if not cdir:
        print("loginretry: skipped (HB_TEST_REDIS_DIR not given)")
        return
    two = [Instance(build, "l%d" % (k + 1), workdir, ["--redis-timeout", "500"])
           for k in range(2)]
    users = []
    pids = [node_pid(cdir, p) for p in cluster_ports(cdir)]
    try:
        subprocess.run(["kill", "-STOP"] + pids, check=True)
        try:
            users = [User(two[1].addr(), 8000 + k) for k in range(3)]  # answered by l2 at once
            time.sleep(2)  # the registry's answers miss their deadline, more than once
        finally:
            subprocess.run(["kill", "-CONT"] + pids, check=True)
        await_registered([(u.user, two[1]) for u in users])
        two[0].send_envelope([u.user for u in users])
        for u in users:
            u.expect(CMD_NOTICE_EX)
        print("loginretry: 3 logins made while Redis was stopped reached the registry; a notice "
              "from another instance found each: ok")
    finally:
        for u in users:
            u.close()
        for i in two:
            i.stop()


SCENARIOS = {"across": scenario_across, "lost": scenario_lost, "login": scenario_login,
             "ids": scenario_ids, "chat": scenario_chat, "budget": scenario_budget, "failover": scenario_failover,
             "generator": scenario_generator, "loginretry": scenario_loginretry, "drawsafe": scenario_drawsafe}


def on_signal(signum, frame):
    raise SystemExit(128 + signum)  # through every finally: instances, cluster, network


def main():
    global SEEDS, REDIS_HOST, CLUSTER, HOSTS
    build, SEEDS = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or list(SCENARIOS)
    workdir = os.environ.get("HB_FLEET_WORKDIR") or "/tmp"
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    inst = []
    failed = 0
    cluster = None

    def teardown():
        nonlocal cluster
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second signal waits for the teardown
            signal.signal(sig, signal.SIG_IGN)
        if cluster is not None:
            cluster.stop()
            cluster = None
        if HOSTS is not None:
            HOSTS.close()

    atexit.register(teardown)
    HOSTS = choose_hosts()
    print("hosts: " + HOSTS.describe(), flush=True)
    for tag in HOSTS.removed:
        print("hosts: removed %s..., left by a run that is gone" % tag)
    try:
        script = os.environ.get("HB_TEST_REDIS_SCRIPT") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "fleet",
            "cluster.sh")
        base = int(os.environ.get("HB_FLEET_REDIS_PORT") or
                   int(SEEDS.split(",")[0].rsplit(":", 1)[1]) + 20)
        own = OwnCluster(script, os.path.join(workdir, "fleet-redis-%d" % base))
        if isinstance(HOSTS, NetnsHosts):
            cluster, start = own, time.time()
            cluster.start_or_clean(HOSTS.gateway, base)
            SEEDS, REDIS_HOST, CLUSTER = cluster.seeds, HOSTS.gateway, (cluster.dir, script)
            print("redis: the test's own cluster on %s, up in %.1f s"
                  % (SEEDS, time.time() - start), flush=True)
        else:
            own.start_or_clean(None, base)
            REDIS_HOST = SEEDS.split(",")[0].rsplit(":", 1)[0]
        for k in range(3):  # i1 makes the fleet's shake plan (the budget scenario)
            inst.append(Instance(build, "i%d" % (k + 1), workdir,
                                 ["--generator"] if k == 0 else []))
        for n in names:
            try:
                if n in ("generator", "budget", "failover", "drawsafe", "loginretry"):
                    SCENARIOS[n](inst, build, workdir)
                else:
                    SCENARIOS[n](inst)
            except Exception as e:  # noqa: BLE001 - report every scenario
                failed += 1
                print("%s: FAILED: %s" % (n, e))
            sys.stdout.flush()
    finally:
        for i in inst:
            rc = i.stop()
            if rc not in (0, None):
                failed += 1
                print("%s exited with %s (log %s)" % (i.name, rc, i.log.name))
        teardown()
    print("summary: %d scenarios, %d failed; hosts: %s" % (len(names), failed, HOSTS.describe()))
    return 1 if failed else 0


if __name__ == "__main__":
    random.seed(1)
    sys.exit(main())
