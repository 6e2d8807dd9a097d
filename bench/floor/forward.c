/*
 * The benchmark's floor: a userspace forwarder that does nothing but the system calls
 * every TUN + UDP dataplane must make. Not a dataplane (its datagrams are not VXLAN,
 * it checks nothing): a measuring stick for what the kernel's forced copies cost.
 *
 * Per direction, one event loop in one thread (like overlayd):
 *   TUN (IFF_VNET_HDR, TSO/USO offloads) -> read a super-packet with its virtio header
 *   -> one sendmsg of those bytes with UDP_SEGMENT (the kernel splits it into datagrams
 *   of SEG bytes; over veth it stays one GSO skb)
 *   UDP socket with UDP_GRO -> one recvmsg returns one such send, joined again
 *   -> one write to TUN (the virtio header travels with it).
 * So per super-packet: four kernel copies (TUN read, send, receive, TUN write) and no
 * userspace work at all. TCP through this path is the most any design built on TUN and
 * UDP sockets can reach on this machine, however fast its packet logic.
 *
 * Usage: forward TUNNAME LOCAL_IP PEER_IP PORT [busy]   (prints "ready" when the TUN exists)
 * With "busy" it never sleeps: poll() with a zero timeout in a loop (a latency experiment).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

enum { SEG = 1400, BUF = 65536 + 64, BATCH = 64 };

static void die(const char *what) {
  fprintf(stderr, "forward: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: forward TUNNAME LOCAL_IP PEER_IP PORT [busy]\n");
    return 2;
  }
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  if (tun < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
  if (ioctl(tun, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (ioctl(tun, TUNSETOFFLOAD, off | TUN_F_USO4 | TUN_F_USO6) < 0 && ioctl(tun, TUNSETOFFLOAD, off) < 0) die("TUNSETOFFLOAD");

  int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (s < 0) die("socket");
  struct sockaddr_in me = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[4]))};
  struct sockaddr_in peer = me;
  if (inet_pton(AF_INET, argv[2], &me.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1) {
    fprintf(stderr, "forward: bad address\n");
    return 2;
  }
  if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) die("bind");
  if (connect(s, (struct sockaddr *)&peer, sizeof peer) < 0) die("connect");
  int one = 1, big = 4 << 20;
  if (setsockopt(s, IPPROTO_UDP, UDP_GRO, &one, sizeof one) < 0) die("UDP_GRO");
  setsockopt(s, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  printf("ready\n");
  fflush(stdout);

  static char tbuf[BUF], ubuf[BUF];
  char ctl[CMSG_SPACE(sizeof(unsigned short))];
  struct pollfd pf[2] = {{.fd = tun, .events = POLLIN}, {.fd = s, .events = POLLIN}};
  int timeout = argc == 6 && strcmp(argv[5], "busy") == 0 ? 0 : -1;
  for (;;) {
    if (poll(pf, 2, timeout) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    /* device -> network */
    for (int i = 0; i < BATCH && (pf[0].revents & POLLIN); i++) {
      ssize_t n = read(tun, tbuf, sizeof tbuf);
      if (n < 0) break;
      struct iovec iov = {.iov_base = tbuf, .iov_len = (size_t)n};
      struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
      if (n > SEG) {
        memset(ctl, 0, sizeof ctl);
        m.msg_control = ctl;
        m.msg_controllen = sizeof ctl;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(unsigned short));
        unsigned short seg = SEG;
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
      }
      sendmsg(s, &m, 0); /* a full socket buffer drops, as a dataplane would */
    }
    /* network -> device */
    for (int i = 0; i < BATCH && (pf[1].revents & POLLIN); i++) {
      ssize_t n = recv(s, ubuf, sizeof ubuf, 0);
      if (n < 0) break;
      if (write(tun, ubuf, (size_t)n) < 0 && errno != EAGAIN && errno != EINVAL && errno != EIO) die("write tun");
    }
  }
}
