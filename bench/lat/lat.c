/*
 * The C tool of the benchmark's latency section (bench/lib/latency.ts).
 *
 * Request/response (netperf TCP_RR style): one TCP connection, one transaction
 * outstanding at a time. The client writes SIZE bytes, blocks until SIZE bytes come
 * back, and starts the next transaction; the server echoes. Both sides set TCP_NODELAY
 * and use plain blocking send/recv, as an ordinary RPC client and server do: no busy
 * polling, so every transaction pays the wake-ups of the path.
 *
 * Fast ping: ICMP echo requests every INTERVAL_US on a fixed schedule (replies may be
 * outstanding; the schedule does not wait for them), the receiver sleeping in ppoll()
 * between events. iputils ping spins (sched_yield in a loop) whenever its next probe
 * is due within one clock tick (10 ms here), which keeps a whole core busy at 1-2 ms
 * intervals: on a 2-CPU machine that takes a core from the path being measured and
 * keeps the kernel path hot. RTT as ping measures it: send time from the clock just
 * before sendto(), receive time from the kernel's timestamp of the reply (SO_TIMESTAMPNS).
 *
 * Two hosts wake their own processes: with LAT_CPU=K in the environment the process
 * pins itself to the K-th CPU it may run on (none when it may run on K or fewer).
 * Unpinned, the client and server of the request/response test share a CPU or not at
 * the scheduler's whim, and on this VM that alone moves the kernel path's rate tenfold
 * (loopback: 210k transactions/s on one CPU, 15k on two, where each transaction wakes
 * a halted vCPU).
 *
 * Usage: lat rr-server BIND_IP PORT                 prints "ready" once listening, then
 *                                                   serves connections one after another
 *        lat rr SRC_IP DST_IP PORT SECONDS [SIZE]   SIZE defaults to 1 byte (netperf's)
 *        lat ping SRC_IP DST_IP COUNT INTERVAL_US   (root: raw ICMP socket)
 * The clients print one JSON line with the percentiles p50/p99/p999 in microseconds
 * (nearest rank, as bench/lib/stats.ts): rr adds transactions and seconds (measured,
 * from connect() done to the last reply); ping adds sent, received (replies that
 * came within 1 s of the last request) and seconds (first to last request).
 */
#define _GNU_SOURCE /* ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "lat: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

static struct sockaddr_in addr(const char *ip, const char *port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
    errno = EINVAL;
    die(ip);
  }
  return a;
}

static void nodelay(int s) {
  int one = 1;
  if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
}

static uint64_t ts_ns(const struct timespec *t) {
  return (uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec;
}

static uint64_t clock_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return ts_ns(&t);
}

static uint64_t now_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}

/* Write all `n` bytes. */
static void send_all(int s, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = send(s, buf, n, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("send");
    buf += w;
    n -= (size_t)w;
  }
}

static _Noreturn void serve(const char *ip, const char *port) {
  struct sockaddr_in me = addr(ip, port);
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (l < 0) die("socket");
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, (struct sockaddr *)&me, sizeof me) < 0) die("bind");
  if (listen(l, 8) < 0) die("listen");
  printf("ready\n");
  fflush(stdout);
  static char buf[65536];
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    nodelay(c);
    for (;;) {
      ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      send_all(c, buf, (size_t)n);
    }
    close(c);
  }
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (in tenths of a percent: 999 = p99.9) of an ascending array, microseconds. */
static double pct_us(const uint32_t *s, size_t n, size_t permille) {
  size_t rank = (permille * n + 999) / 1000;
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return s[rank - 1] / 1000.0;
}

/* Sort `n` samples (ns) and print `"p50":..,"p99":..,"p999":..` in microseconds. */
static void print_pcts(uint32_t *t, size_t n) {
  qsort(t, n, sizeof *t, cmp_u32);
  printf("\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f", pct_us(t, n, 500), pct_us(t, n, 990), pct_us(t, n, 999));
}

static int rr_client(const char *src, const char *dst, const char *port, double seconds, size_t size) {
  struct sockaddr_in me = addr(src, "0"), peer = addr(dst, port);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  struct timeval tmo = {.tv_sec = 5};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
  if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) die("bind");
  if (connect(s, (struct sockaddr *)&peer, sizeof peer) < 0) die("connect");
  nodelay(s);
  char *buf = calloc(1, size);
  size_t cap = 1 << 16, n = 0;
  uint32_t *t = malloc(cap * sizeof *t);
  if (!buf || !t) die("malloc");
  const uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
  uint64_t last = start;
  while (last < end) {
    uint64_t t0 = now_ns();
    send_all(s, buf, size);
    for (size_t got = 0; got < size;) {
      ssize_t r = recv(s, buf + got, size - got, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) errno = 0;
      if (r <= 0) die(r == 0 ? "server closed the connection" : "recv");
      got += (size_t)r;
    }
    last = now_ns();
    if (n == cap) {
      cap *= 2;
      if (!(t = realloc(t, cap * sizeof *t))) die("realloc");
    }
    uint64_t d = last - t0;
    t[n++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
  }
  close(s);
  if (n == 0) die("no transaction completed");
  printf("{\"transactions\":%zu,\"seconds\":%.6f,\"size\":%zu,", n, (double)(last - start) / 1e9, size);
  print_pcts(t, n);
  printf("}\n");
  return 0;
}

static uint16_t inet_sum(const void *data, size_t len) {
  const uint8_t *p = data;
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += (uint32_t)(p[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons((uint16_t)~sum);
}

/* Drain the socket: match echo replies from `peer` with our id to their requests. */
static void receive_replies(int s, struct in_addr peer, uint16_t id, const uint64_t *sent_at, uint32_t *rtt, size_t sent, size_t *received) {
  char buf[2048], ctl[256];
  for (;;) {
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
    ssize_t n = recvmsg(s, &m, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      die("recvmsg");
    }
    uint64_t rx = clock_ns(CLOCK_REALTIME);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        rx = ts_ns(&ts);
      }
    const struct iphdr *ip = (const struct iphdr *)buf;
    size_t hl = (size_t)ip->ihl * 4;
    if ((size_t)n < hl + sizeof(struct icmphdr) || ip->saddr != peer.s_addr) continue;
    const struct icmphdr *ic = (const struct icmphdr *)(buf + hl);
    size_t seq = ntohs(ic->un.echo.sequence);
    if (ic->type != ICMP_ECHOREPLY || ntohs(ic->un.echo.id) != id || seq >= sent || rtt[seq] != UINT32_MAX) continue;
    uint64_t d = rx > sent_at[seq] ? rx - sent_at[seq] : 0;
    rtt[seq] = d >= UINT32_MAX ? UINT32_MAX - 1 : (uint32_t)d;
    (*received)++;
  }
}

static int ping(const char *src, const char *dst, long count, long interval_us) {
  struct sockaddr_in me = addr(src, "0"), peer = addr(dst, "0");
  int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), one = 1;
  if (s < 0) die("raw ICMP socket");
  if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) die("bind");
  if (setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) die("SO_TIMESTAMPNS");
  const uint16_t id = (uint16_t)getpid();
  uint64_t *sent_at = calloc((size_t)count, sizeof *sent_at);
  uint32_t *rtt = malloc((size_t)count * sizeof *rtt);
  if (!sent_at || !rtt) die("malloc");
  memset(rtt, 0xff, (size_t)count * sizeof *rtt);
  struct {
    struct icmphdr h;
    uint8_t data[56];
  } req = {.h = {.type = ICMP_ECHO, .un.echo.id = htons(id)}};
  const uint64_t step = (uint64_t)interval_us * 1000u;
  const uint64_t start = now_ns();
  uint64_t next = start, deadline = 0, last = start;
  size_t sent = 0, received = 0;
  while (sent < (size_t)count || (received < sent && now_ns() < deadline)) {
    uint64_t now = now_ns();
    if (sent < (size_t)count && now >= next) {
      req.h.un.echo.sequence = htons((uint16_t)sent);
      req.h.checksum = 0;
      req.h.checksum = inet_sum(&req, sizeof req);
      sent_at[sent] = clock_ns(CLOCK_REALTIME);
      if (sendto(s, &req, sizeof req, 0, (struct sockaddr *)&peer, sizeof peer) < 0 && errno != ENOBUFS) die("sendto");
      sent++;
      last = now;
      next += step;
      if (next < now) next = now; /* after a stall: no burst to catch up */
      deadline = now + 1000000000u;
      continue;
    }
    uint64_t until = sent < (size_t)count ? next : deadline;
    struct timespec tmo = {0, 0};
    if (until > now) tmo = (struct timespec){(time_t)((until - now) / 1000000000u), (long)((until - now) % 1000000000u)};
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    if (ppoll(&pfd, 1, &tmo, NULL) < 0 && errno != EINTR) die("ppoll");
    if (pfd.revents & POLLIN) receive_replies(s, peer.sin_addr, id, sent_at, rtt, sent, &received);
  }
  size_t n = 0;
  for (size_t i = 0; i < sent; i++)
    if (rtt[i] != UINT32_MAX) rtt[n++] = rtt[i];
  printf("{\"sent\":%zu,\"received\":%zu,\"seconds\":%.6f", sent, n, (double)(last - start) / 1e9);
  if (n) {
    printf(",");
    print_pcts(rtt, n);
  }
  printf("}\n");
  return 0;
}

/* LAT_CPU=K: run on the K-th allowed CPU only, if there is one. */
static void pin_from_env(void) {
  const char *k = getenv("LAT_CPU");
  cpu_set_t allowed, one;
  if (!k || sched_getaffinity(0, sizeof allowed, &allowed) < 0) return;
  for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &allowed) || seen++ != atoi(k)) continue;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) < 0) die("sched_setaffinity");
    return;
  }
}

int main(int argc, char **argv) {
  pin_from_env();
  if (argc == 4 && strcmp(argv[1], "rr-server") == 0) serve(argv[2], argv[3]);
  if ((argc == 6 || argc == 7) && strcmp(argv[1], "rr") == 0) {
    double seconds = atof(argv[5]);
    long size = argc == 7 ? atol(argv[6]) : 1;
    if (seconds <= 0 || size < 1 || size > 65536) {
      fprintf(stderr, "lat: SECONDS must be > 0 and SIZE in 1..65536\n");
      return 2;
    }
    return rr_client(argv[2], argv[3], argv[4], seconds, (size_t)size);
  }
  if (argc == 6 && strcmp(argv[1], "ping") == 0) {
    long count = atol(argv[4]), interval_us = atol(argv[5]);
    if (count < 1 || count > 65536 || interval_us < 100) {
      fprintf(stderr, "lat: COUNT must be in 1..65536 and INTERVAL_US at least 100\n");
      return 2;
    }
    return ping(argv[2], argv[3], count, interval_us);
  }
  fprintf(stderr, "usage: lat rr-server BIND_IP PORT | lat rr SRC_IP DST_IP PORT SECONDS [SIZE] | lat ping SRC_IP DST_IP COUNT INTERVAL_US\n");
  return 2;
}
