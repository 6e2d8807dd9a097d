// overlay_native: syscalls only (TUN/TAP open, batched read/write with uv_poll
// readiness, recvmmsg/sendmmsg UDP, raw NETLINK_ROUTE with uv_poll readiness and sends on
// the libuv pool). No packet logic lives here:
// all parsing and building of packets happens in TypeScript (src/tun, src/codec).
//
// Batches are exchanged through caller-owned slot Buffers (registered once) and a
// small Uint32Array "descriptor" array, stride DESC_STRIDE per slot:
//   [0] off   [1] len   [2] family (4|6)   [3] port   [4] IPv4 addr (a<<24|b<<16|c<<8|d)
//   [5] flags: receive: 1 = MSG_TRUNC; UDP send: status written back (TX_* | errno << 8)
//   [6] UDP segment size: send: UDP_SEGMENT (GSO) when > 0; receive: gso_size of a UDP_GRO
//       message (0: one datagram)
//   [7] UDP send: entries in this message (0 or 1: the entry alone). A GSO message may gather
//       its datagrams from k consecutive entries (k iovecs, the kernel concatenates them); the
//       first entry carries the address and segment size, the other k - 1 only off/len.
// IPv6 addresses travel in a Uint8Array of 16 bytes per slot.
#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>  // before linux/ headers (glibc/uapi compatibility)
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/udp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

static const int DESC_STRIDE = 8;

// Offload constants missing from older uapi headers.
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
#ifndef SOL_UDP
#define SOL_UDP 17  // IPPROTO_UDP
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

// Per-message send status written back into desc[5] by BatchIo.write in UDP mode
// (low byte; errno of a failure in the bits above).
enum TxStatus : uint32_t { TX_NOT_SENT = 0, TX_SENT = 1, TX_DROPPED = 2, TX_GSO_REJECTED = 3 };
// Control buffer room per message (UDP_SEGMENT on send, UDP_GRO on receive).
static const size_t CTRL_LEN = 64;

// CLOCK_MONOTONIC in microseconds (the timing mode's clock).
static double MonoUs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

// The clock SO_TIMESTAMPNS stamps with (CLOCK_REALTIME), in microseconds.
static double RealUs() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}
static std::set<int> g_fds;  // every fd this addon opened and has not closed yet

static void CloseAllFds(void*) {
  for (int fd : g_fds) close(fd);
  g_fds.clear();
}

static void TrackFd(int fd) { g_fds.insert(fd); }
static void CloseFd(int fd) {
  if (g_fds.erase(fd)) close(fd);
}

// A JS Error with code = errno name, errno = -err (libuv style), syscall = what.
static Napi::Value ThrowErrno(Napi::Env env, int err, const std::string& what) {
  std::string msg = what + ": " + strerror(err);
  if (err == EPERM || err == EACCES) msg += " (needs CAP_NET_ADMIN)";
  if (err == EBUSY) msg += " (device name in use)";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, what));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

static Napi::Value ThrowType(Napi::Env env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// Address helpers (sockaddr <-> descriptor fields)

static bool ParseAddr(const std::string& s, int port, int sockFamily, sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof(*ss));
  if (sockFamily == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (inet_pton(AF_INET6, s.c_str(), &a->sin6_addr) != 1) {
      in_addr v4;
      if (inet_pton(AF_INET, s.c_str(), &v4) != 1) return false;
      a->sin6_addr.s6_addr[10] = 0xff;
      a->sin6_addr.s6_addr[11] = 0xff;
      memcpy(&a->sin6_addr.s6_addr[12], &v4, 4);
    }
    *len = sizeof(sockaddr_in6);
    return true;
  }
  auto* a = reinterpret_cast<sockaddr_in*>(ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  if (inet_pton(AF_INET, s.c_str(), &a->sin_addr) != 1) return false;
  *len = sizeof(sockaddr_in);
  return true;
}

// Fill descriptor fields from a received sockaddr (v4-mapped v6 reported as v4).
static void SockaddrToDesc(const sockaddr_storage* ss, uint32_t* d, uint8_t* a6) {
  if (ss->ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(ss);
    d[2] = 4;
    d[3] = ntohs(a->sin_port);
    d[4] = ntohl(a->sin_addr.s_addr);
  } else if (ss->ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(ss);
    d[3] = ntohs(a->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
      uint32_t v;
      memcpy(&v, &a->sin6_addr.s6_addr[12], 4);
      d[2] = 4;
      d[4] = ntohl(v);
    } else {
      d[2] = 6;
      d[4] = 0;
      memcpy(a6, a->sin6_addr.s6_addr, 16);
    }
  } else {
    d[2] = 0;
    d[3] = 0;
    d[4] = 0;
  }
}

// Build a destination sockaddr from descriptor fields for a socket of sockFamily.
static socklen_t DescToSockaddr(const uint32_t* d, const uint8_t* a6, int sockFamily, sockaddr_storage* ss) {
  memset(ss, 0, sizeof(sockaddr_in6));
  // An IPv6 destination on an IPv4 socket gets an AF_INET6 sockaddr: the kernel rejects
  // that one datagram (dropped) instead of sending it to a bogus IPv4 address.
  if (sockFamily == AF_INET6 || d[2] == 6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(d[3]));
    if (d[2] == 4) {
      a->sin6_addr.s6_addr[10] = 0xff;
      a->sin6_addr.s6_addr[11] = 0xff;
      uint32_t v = htonl(d[4]);
      memcpy(&a->sin6_addr.s6_addr[12], &v, 4);
    } else {
      memcpy(a->sin6_addr.s6_addr, a6, 16);
    }
    return sizeof(sockaddr_in6);
  }
  auto* a = reinterpret_cast<sockaddr_in*>(ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<uint16_t>(d[3]));
  a->sin_addr.s_addr = htonl(d[4]);
  return sizeof(sockaddr_in);
}

// ---------------------------------------------------------------------------
// BatchIo: one fd read in batches on readiness, written in batches.
// mode 0: packet fd (TUN/TAP), read()/writev(); hdrLen bytes of virtio_net_hdr in front if > 0.
// mode 1: UDP socket, recvmmsg()/sendmmsg().

// ---------------------------------------------------------------------------
// One uv_poll readability watcher on an fd, shared by BatchIo and FdWatch: created on first
// start, ref/unref follow the owner's choice, closed (and freed by libuv) on Close.
struct PollHandle {
  uv_poll_t* poll = nullptr;
  bool refed = true;

  // Start watching `fd` for readability; `data` is handed to `cb` as h->data. 0 or a libuv error
  // (negative), with `what` set to the failing call.
  int Start(napi_env env, int fd, void* data, uv_poll_cb cb, const char** what) {
    if (!poll) {
      uv_loop_t* loop = nullptr;
      napi_get_uv_event_loop(env, &loop);
      poll = new uv_poll_t;
      int r = uv_poll_init(loop, poll, fd);
      if (r < 0) {
        delete poll;
        poll = nullptr;
        *what = "uv_poll_init";
        return r;
      }
      poll->data = data;
      if (!refed) uv_unref(reinterpret_cast<uv_handle_t*>(poll));
    }
    int r = uv_poll_start(poll, UV_READABLE, cb);
    if (r < 0) *what = "uv_poll_start";
    return r;
  }
  void Stop() {
    if (poll) uv_poll_stop(poll);
  }
  void SetRef(bool on) {
    refed = on;
    if (poll) {
      if (on) uv_ref(reinterpret_cast<uv_handle_t*>(poll));
      else uv_unref(reinterpret_cast<uv_handle_t*>(poll));
    }
  }
  void Close() {
    if (poll) {
      uv_poll_stop(poll);
      poll->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll = nullptr;
    }
  }
};

class BatchIo : public Napi::ObjectWrap<BatchIo> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "BatchIo",
                       {InstanceMethod("setRxSlots", &BatchIo::SetRxSlots), InstanceMethod("start", &BatchIo::Start),
                        InstanceMethod("stop", &BatchIo::Stop), InstanceMethod("write", &BatchIo::Write),
                        InstanceMethod("read", &BatchIo::ReadSync), InstanceMethod("close", &BatchIo::Close),
                        InstanceMethod("ref", &BatchIo::RefLoop), InstanceMethod("unref", &BatchIo::UnrefLoop),
                        InstanceMethod("setStamps", &BatchIo::SetStamps)});
  }

  BatchIo(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BatchIo>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      ThrowType(env, "BatchIo(fd, mode, hdrLen|sockFamily, inlineHdr?)");
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
    mode_ = info[1].As<Napi::Number>().Int32Value();
    int extra = info[2].As<Napi::Number>().Int32Value();
    if (mode_ == 0) hdrLen_ = extra;
    else sockFamily_ = extra == 6 ? AF_INET6 : AF_INET;
    if (hdrLen_ < 0 || hdrLen_ > 64) hdrLen_ = 0;
    // Offload layout: the virtio_net_hdr lives in the slot right before off (see ReadBatch/Write).
    inlineHdr_ = mode_ == 0 && hdrLen_ > 0 && info.Length() > 3 && info[3].ToBoolean();
  }

  ~BatchIo() override { ClosePoll(); }

 private:
  int fd_ = -1;
  int mode_ = 0;
  int hdrLen_ = 0;
  bool inlineHdr_ = false;  // mode 0: header at buf[off - hdrLen, off) instead of a scratch/zero buffer
  int sockFamily_ = AF_INET;
  bool started_ = false;
  bool inCallback_ = false;
  PollHandle poll_;
  Napi::FunctionReference cb_;
  Napi::Reference<Napi::Array> rxBufsRef_;
  Napi::Reference<Napi::Uint32Array> rxDescRef_;
  Napi::Reference<Napi::Uint8Array> rxA6Ref_;
  std::vector<char*> rxPtr_;
  std::vector<size_t> rxCap_;
  uint32_t* rxDesc_ = nullptr;
  uint8_t* rxA6_ = nullptr;
  size_t nrx_ = 0;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
  std::vector<sockaddr_storage> addrs_;
  std::vector<uint64_t> ctrl_;  // mode 1: CTRL_LEN bytes of cmsg room per receive slot (8-aligned)
  uint8_t hdrScratch_[64] = {0};
  uint8_t zeroHdr_[64] = {0};
  // Timing mode (setStamps): per batch handed to the callback, CLOCK_MONOTONIC microseconds of
  // [0] the wake-up (readiness reported), [1] the read returning, [2] the kernel's receive time
  // of the batch's first datagram (SO_TIMESTAMPNS; 0 when it carried none).
  Napi::Reference<Napi::Float64Array> stampsRef_;
  double* stamps_ = nullptr;

  // setStamps(Float64Array(3) | null)
  Napi::Value SetStamps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array &&
        info[0].As<Napi::Float64Array>().ElementLength() >= 3) {
      Napi::Float64Array a = info[0].As<Napi::Float64Array>();
      stampsRef_ = Napi::Persistent(a);
      stamps_ = a.Data();
    } else {
      stampsRef_.Reset();
      stamps_ = nullptr;
    }
    return env.Undefined();
  }

  // Kernel receive time (SCM_TIMESTAMPNS, CLOCK_REALTIME) of message `mh` in CLOCK_MONOTONIC
  // microseconds, given the two clocks read together now; 0 when it has none.
  static double RxStampMono(msghdr* mh, double realNow, double monoNow) {
    for (cmsghdr* c = CMSG_FIRSTHDR(mh); c != nullptr; c = CMSG_NXTHDR(mh, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS && c->cmsg_len >= CMSG_LEN(sizeof(timespec))) {
        timespec t;
        memcpy(&t, CMSG_DATA(c), sizeof(t));
        double real = static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
        return monoNow - (realNow - real);
      }
    }
    return 0;
  }

  void ClosePoll() {
    poll_.Close();
    if (started_) {
      started_ = false;
      // Unref of the ObjectWrap is not safe from a destructor; only from JS-callable paths.
    }
  }

  // Pin the receive slots: bufs[i] is slot i, desc holds off (set by the caller) and receives len/addr.
  Napi::Value SetRxSlots(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsTypedArray()) return ThrowType(env, "setRxSlots(bufs[], desc, addr6?)");
    Napi::Array bufs = info[0].As<Napi::Array>();
    Napi::Uint32Array desc = info[1].As<Napi::Uint32Array>();
    size_t n = bufs.Length();
    if (desc.ElementLength() < n * DESC_STRIDE) return ThrowType(env, "descriptor array too short");
    rxPtr_.resize(n);
    rxCap_.resize(n);
    for (size_t i = 0; i < n; i++) {
      Napi::Value v = bufs.Get(i);
      if (!v.IsBuffer()) return ThrowType(env, "slot buffer is not a Buffer");
      Napi::Buffer<char> b = v.As<Napi::Buffer<char>>();
      rxPtr_[i] = b.Data();
      rxCap_[i] = b.Length();
    }
    rxBufsRef_ = Napi::Persistent(bufs);
    rxDescRef_ = Napi::Persistent(desc);
    rxDesc_ = desc.Data();
    if (info.Length() > 2 && info[2].IsTypedArray()) {
      Napi::Uint8Array a6 = info[2].As<Napi::Uint8Array>();
      if (a6.ElementLength() < n * 16) return ThrowType(env, "addr6 array too short");
      rxA6Ref_ = Napi::Persistent(a6);
      rxA6_ = a6.Data();
    }
    nrx_ = n;
    msgs_.assign(n, mmsghdr{});
    iovs_.assign(n * 2, iovec{});
    addrs_.assign(n, sockaddr_storage{});
    ctrl_.assign(n * (CTRL_LEN / 8), 0);
    return env.Undefined();
  }

  // Read one batch now (non-blocking). Returns the count (0 when nothing is queued).
  int ReadBatch(int* errOut) {
    *errOut = 0;
    if (fd_ < 0 || nrx_ == 0) return 0;
    if (mode_ == 0) {
      size_t count = 0;
      while (count < nrx_) {
        uint32_t* d = rxDesc_ + count * DESC_STRIDE;
        size_t off = d[0];
        if (off > rxCap_[count]) off = rxCap_[count];
        iovec iov[2];
        int niov = 0;
        if (inlineHdr_) {
          // One read into buf + off - hdrLen: header at [off - hdrLen, off), packet at off.
          if (off < static_cast<size_t>(hdrLen_)) off = hdrLen_;
          iov[niov++] = {rxPtr_[count] + off - hdrLen_, rxCap_[count] - (off - hdrLen_)};
        } else {
          if (hdrLen_ > 0) iov[niov++] = {hdrScratch_, static_cast<size_t>(hdrLen_)};
          iov[niov++] = {rxPtr_[count] + off, rxCap_[count] - off};
        }
        ssize_t r = readv(fd_, iov, niov);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) *errOut = errno;
          break;
        }
        d[1] = r > hdrLen_ ? static_cast<uint32_t>(r - hdrLen_) : 0;
        if (inlineHdr_) d[0] = static_cast<uint32_t>(off);
        count++;
      }
      return static_cast<int>(count);
    }
    for (size_t i = 0; i < nrx_; i++) {
      uint32_t* d = rxDesc_ + i * DESC_STRIDE;
      size_t off = d[0];
      if (off > rxCap_[i]) off = rxCap_[i];
      iovs_[i] = {rxPtr_[i] + off, rxCap_[i] - off};
      memset(&msgs_[i].msg_hdr, 0, sizeof(msghdr));
      msgs_[i].msg_hdr.msg_iov = &iovs_[i];
      msgs_[i].msg_hdr.msg_iovlen = 1;
      msgs_[i].msg_hdr.msg_name = &addrs_[i];
      msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      msgs_[i].msg_hdr.msg_control = &ctrl_[i * (CTRL_LEN / 8)];
      msgs_[i].msg_hdr.msg_controllen = CTRL_LEN;
    }
    int r;
    do {
      r = recvmmsg(fd_, msgs_.data(), static_cast<unsigned>(nrx_), MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) *errOut = errno;
      return 0;
    }
    for (int i = 0; i < r; i++) {
      uint32_t* d = rxDesc_ + i * DESC_STRIDE;
      d[1] = msgs_[i].msg_len;
      d[5] = (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
      d[6] = GroSegSize(&msgs_[i].msg_hdr);
      SockaddrToDesc(&addrs_[i], d, rxA6_ ? rxA6_ + i * 16 : hdrScratch_);
    }
    return r;
  }

  // gso_size of a coalesced (UDP_GRO) message from its control data; 0 for a single datagram.
  static uint32_t GroSegSize(msghdr* mh) {
    for (cmsghdr* c = CMSG_FIRSTHDR(mh); c != nullptr; c = CMSG_NXTHDR(mh, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int v;
        memcpy(&v, CMSG_DATA(c), sizeof(v));
        return v > 0 ? static_cast<uint32_t>(v) : 0;
      }
    }
    return 0;
  }

  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    BatchIo* self = static_cast<BatchIo*>(h->data);
    if (!self || !self->started_) return;
    (void)status;  // errors surface through the read below
    double wake = self->stamps_ ? MonoUs() : 0;
    int err = 0;
    int n = self->ReadBatch(&err);
    if (n <= 0 && err == 0) return;
    if (self->stamps_) {
      double* st = self->stamps_;
      st[0] = wake;
      st[1] = MonoUs();
      st[2] = self->mode_ == 1 && n > 0 ? RxStampMono(&self->msgs_[0].msg_hdr, RealUs(), st[1]) : 0;
    }
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->inCallback_ = true;
    self->cb_.MakeCallback(env.Global(), {Napi::Number::New(env, n > 0 ? n : -err)});
    self->inCallback_ = false;
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

  // start(cb): begin polling for readability; cb(count) per batch (negative: -errno of a read error).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) return ThrowType(env, "start(callback)");
    if (fd_ < 0) return ThrowErrno(env, EBADF, "start");
    cb_ = Napi::Persistent(info[0].As<Napi::Function>());
    const char* what = "";
    int r = poll_.Start(env, fd_, this, OnPoll, &what);
    if (r < 0) return ThrowErrno(env, -r, what);
    if (!started_) {
      started_ = true;
      Ref();  // keep this object alive while the loop may call it
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    if (started_) {
      started_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    poll_.SetRef(true);
    return info.Env().Undefined();
  }

  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    poll_.SetRef(false);
    return info.Env().Undefined();
  }

  // read(): one synchronous non-blocking batch read into the registered slots; returns count.
  Napi::Value ReadSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int err = 0;
    double start = stamps_ ? MonoUs() : 0;
    int n = ReadBatch(&err);
    if (n == 0 && err != 0) return ThrowErrno(env, err, mode_ == 0 ? "read" : "recvmmsg");
    if (stamps_ && n > 0) {  // a busy-poll read: "wake-up" is when the read began
      stamps_[0] = start;
      stamps_[1] = MonoUs();
      stamps_[2] = mode_ == 1 ? RxStampMono(&msgs_[0].msg_hdr, RealUs(), stamps_[1]) : 0;
    }
    return Napi::Number::New(env, n);
  }

  // write(bufs[], desc, addr6|null, count): returns how many were written (stops at EAGAIN).
  // TUN/TAP with an inline header: each packet is written from off - hdrLen (the caller put the
  // virtio_net_hdr there); a slot with off < hdrLen is dropped.
  // UDP: desc[6] > 0 sends the slot as a GSO run (UDP_SEGMENT cmsg, one per message); desc[5] of
  // every message gets its TxStatus | errno << 8. A GSO message refused with EIO, EINVAL or
  // EOPNOTSUPP stops the call there (TX_GSO_REJECTED) so the caller can resend it split.
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsTypedArray() || !info[3].IsNumber())
      return ThrowType(env, "write(bufs[], desc, addr6, count)");
    if (fd_ < 0) return ThrowErrno(env, EBADF, "write");
    napi_value arr = info[0];
    Napi::Uint32Array desc = info[1].As<Napi::Uint32Array>();
    const uint32_t* dd = desc.Data();
    const uint8_t* a6 = nullptr;
    if (info[2].IsTypedArray()) a6 = info[2].As<Napi::Uint8Array>().Data();
    uint32_t count = info[3].As<Napi::Number>().Uint32Value();
    uint32_t alen = 0;
    napi_get_array_length(env, arr, &alen);
    if (count > alen) count = alen;
    if (desc.ElementLength() < static_cast<size_t>(count) * DESC_STRIDE) count = desc.ElementLength() / DESC_STRIDE;
    static thread_local std::vector<mmsghdr> tmsgs;
    static thread_local std::vector<iovec> tiovs;
    static thread_local std::vector<sockaddr_storage> taddrs;
    static thread_local std::vector<uint64_t> tctrl;
    if (tmsgs.size() < count) {
      tmsgs.resize(count);
      tiovs.resize(count);
      taddrs.resize(count);
      tctrl.resize(count * (CTRL_LEN / 8));
    }
    // Resolve buffers first.
    for (uint32_t i = 0; i < count; i++) {
      napi_value el;
      void* data = nullptr;
      size_t len = 0;
      if (napi_get_element(env, arr, i, &el) != napi_ok || napi_get_buffer_info(env, el, &data, &len) != napi_ok)
        return ThrowType(env, "write: element is not a Buffer");
      const uint32_t* d = dd + i * DESC_STRIDE;
      size_t off = d[0], plen = d[1];
      if (off > len) off = len;
      if (plen > len - off) plen = len - off;
      if (inlineHdr_) {
        if (off < static_cast<size_t>(hdrLen_)) {
          tiovs[i] = {nullptr, 0};  // no room for the header: dropped below
          continue;
        }
        off -= hdrLen_;
        plen += hdrLen_;
      }
      tiovs[i] = {static_cast<char*>(data) + off, plen};
    }
    uint32_t written = 0;
    if (mode_ == 0) {
      for (uint32_t i = 0; i < count; i++) {
        iovec iov[2];
        int niov = 0;
        if (inlineHdr_) {
          if (tiovs[i].iov_base == nullptr) continue;
        } else if (hdrLen_ > 0) {
          iov[niov++] = {zeroHdr_, static_cast<size_t>(hdrLen_)};
        }
        iov[niov++] = tiovs[i];
        ssize_t r = writev(fd_, iov, niov);
        if (r < 0) {
          if (errno == EINTR) { i--; continue; }
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          continue;  // this packet is dropped (EINVAL, EIO when down...); keep going
        }
        written++;
      }
      return Napi::Number::New(env, written);
    }
    uint32_t* dw = desc.Data();
    // messages: entry i starts one, covering desc[7] entries (gathered iovecs)
    static thread_local std::vector<uint32_t> tfirst;
    if (tfirst.size() < count) tfirst.resize(count);
    uint32_t nmsg = 0;
    for (uint32_t i = 0; i < count;) {
      uint32_t* d = dw + i * DESC_STRIDE;
      uint32_t k = d[7] > 1 ? d[7] : 1;
      if (k > count - i) k = count - i;
      for (uint32_t j = i; j < i + k; j++) dw[j * DESC_STRIDE + 5] = TX_NOT_SENT;
      tfirst[nmsg] = i;
      mmsghdr* m = &tmsgs[nmsg];
      memset(m, 0, sizeof(mmsghdr));
      m->msg_hdr.msg_iov = &tiovs[i];
      m->msg_hdr.msg_iovlen = k;
      if (d[3] != 0) {
        m->msg_hdr.msg_name = &taddrs[nmsg];
        m->msg_hdr.msg_namelen = DescToSockaddr(d, a6 ? a6 + i * 16 : zeroHdr_, sockFamily_, &taddrs[nmsg]);
      }
      if (d[6] > 0 && d[6] <= 0xffff) {
        msghdr* mh = &m->msg_hdr;
        mh->msg_control = &tctrl[nmsg * (CTRL_LEN / 8)];
        mh->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        memset(mh->msg_control, 0, mh->msg_controllen);
        cmsghdr* c = CMSG_FIRSTHDR(mh);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = static_cast<uint16_t>(d[6]);
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
      }
      nmsg++;
      i += k;
    }
    // the status of message m goes to every entry it gathered
    auto status = [&](uint32_t m, uint32_t st) {
      uint32_t end = m + 1 < nmsg ? tfirst[m + 1] : count;
      for (uint32_t j = tfirst[m]; j < end; j++) dw[j * DESC_STRIDE + 5] = st;
    };
    uint32_t pos = 0;
    while (pos < nmsg) {
      int r = sendmmsg(fd_, tmsgs.data() + pos, nmsg - pos, MSG_DONTWAIT);
      if (r < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) break;
        if (tmsgs[pos].msg_hdr.msg_control != nullptr && (err == EIO || err == EINVAL || err == EOPNOTSUPP)) {
          status(pos, TX_GSO_REJECTED | static_cast<uint32_t>(err) << 8);
          break;  // the caller resends from here without GSO
        }
        status(pos, TX_DROPPED | static_cast<uint32_t>(err) << 8);
        pos++;  // this message failed (unreachable, refused...): drop it and go on
        continue;
      }
      for (int k = 0; k < r; k++) status(pos + k, TX_SENT);
      written += r;
      pos += r;
    }
    return Napi::Number::New(env, written);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    ClosePoll();
    if (fd_ >= 0) {
      CloseFd(fd_);
      fd_ = -1;
    }
    if (started_) {
      started_ = false;
      Unref();
    }
    if (!cb_.IsEmpty()) cb_.Reset();
    return info.Env().Undefined();
  }
};

// ---------------------------------------------------------------------------
// Free functions

// tunOpen(name, tap, multiQueue, vnetHdr, persist) -> { fd, name, ifindex }
static Napi::Value TunOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString()) return ThrowType(env, "tunOpen(name, tap, multiQueue, vnetHdr, persist)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bool tap = info[1].ToBoolean(), mq = info[2].ToBoolean(), vnet = info[3].ToBoolean(), persist = info[4].ToBoolean();
  if (name.size() >= IFNAMSIZ) {
    Napi::Error e = Napi::Error::New(env, "interface name '" + name + "' is longer than 15 bytes");
    e.Set("code", Napi::String::New(env, "EINVAL"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ThrowErrno(env, errno, "open /dev/net/tun");
  ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  ifr.ifr_flags = static_cast<short>((tap ? IFF_TAP : IFF_TUN) | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0));
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, std::string("TUNSETIFF ") + (name.empty() ? (tap ? "tap%d" : "tun%d") : name));
  }
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "TUNSETPERSIST");
  }
  TrackFd(fd);
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  out.Set("ifindex", Napi::Number::New(env, if_nametoindex(ifr.ifr_name)));
  return out;
}

// tunSetPersist(fd, on)
static Napi::Value TunSetPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (ioctl(fd, TUNSETPERSIST, info[1].ToBoolean() ? 1 : 0) < 0) return ThrowErrno(env, errno, "TUNSETPERSIST");
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// Offloads: TUN virtio_net_hdr / TUNSETOFFLOAD, UDP GSO (UDP_SEGMENT) and GRO (UDP_GRO).
// These return 0 or -errno instead of throwing: callers probe and fall back.

// tunSetVnetHdrSz(fd, size) -> 0 | -errno
static Napi::Value TunSetVnetHdrSz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "tunSetVnetHdrSz(fd, size)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int sz = info[1].As<Napi::Number>().Int32Value();
  int r = ioctl(fd, TUNSETVNETHDRSZ, &sz);
  return Napi::Number::New(env, r < 0 ? -errno : 0);
}

// tunSetOffload(fd, flags) -> 0 | -errno (TUN_F_* bits; EINVAL for bits this kernel does not know)
static Napi::Value TunSetOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return ThrowType(env, "tunSetOffload(fd, flags)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  unsigned long flags = info[1].As<Napi::Number>().Uint32Value();
  int r = ioctl(fd, TUNSETOFFLOAD, flags);
  return Napi::Number::New(env, r < 0 ? -errno : 0);
}

// udpGsoProbe(fd) -> 0 when the socket knows UDP_SEGMENT, else -errno (ENOPROTOOPT on old kernels)
static Napi::Value UdpGsoProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int v = 0;
  socklen_t l = sizeof(v);
  int r = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &l);
  return Napi::Number::New(env, r < 0 ? -errno : 0);
}

// setsockopt(fd, level, name, int v) as 0 | -errno, for the small option setters below.
static Napi::Value IntSockOpt(Napi::Env env, int fd, int level, int name, int v) {
  int r = setsockopt(fd, level, name, &v, sizeof(v));
  return Napi::Number::New(env, r < 0 ? -errno : 0);
}

static int ArgFd(const Napi::CallbackInfo& info) { return info[0].As<Napi::Number>().Int32Value(); }
static int ArgOn(const Napi::CallbackInfo& info) { return info.Length() > 1 && info[1].ToBoolean() ? 1 : 0; }

// udpSetGro(fd, on) -> 0 | -errno
static Napi::Value UdpSetGro(const Napi::CallbackInfo& info) {
  return IntSockOpt(info.Env(), ArgFd(info), SOL_UDP, UDP_GRO, ArgOn(info));
}

// udpSetTimestamp(fd, on) -> 0 | -errno: SO_TIMESTAMPNS (the kernel's receive time of every
// datagram, read by BatchIo's timing stamps).
static Napi::Value UdpSetTimestamp(const Napi::CallbackInfo& info) {
  return IntSockOpt(info.Env(), ArgFd(info), SOL_SOCKET, SO_TIMESTAMPNS, ArgOn(info));
}

// udpSetNoCheck(fd, on) -> 0 | -errno: SO_NO_CHECK (IPv4 UDP sent without checksum; the kernel
// then refuses UDP_SEGMENT with EINVAL, which also makes the GSO fallback testable).
static Napi::Value UdpSetNoCheck(const Napi::CallbackInfo& info) {
  return IntSockOpt(info.Env(), ArgFd(info), SOL_SOCKET, SO_NO_CHECK, ArgOn(info));
}

// udpSetPmtuDisc(fd, family 4|6, mode) -> 0 | -errno: IP_MTU_DISCOVER / IPV6_MTU_DISCOVER.
// IP_PMTUDISC_DONT (0) clears DF and IP_PMTUDISC_DO (2) sets it on every datagram, UDP GSO
// segments included (with the default IP_PMTUDISC_WANT plain sends get DF, GSO segments not).
static Napi::Value UdpSetPmtuDisc(const Napi::CallbackInfo& info) {
  int family = info[1].As<Napi::Number>().Int32Value();
  int mode = info[2].As<Napi::Number>().Int32Value();
  return family == 6 ? IntSockOpt(info.Env(), ArgFd(info), IPPROTO_IPV6, IPV6_MTU_DISCOVER, mode)
                     : IntSockOpt(info.Env(), ArgFd(info), IPPROTO_IP, IP_MTU_DISCOVER, mode);
}

// ---------------------------------------------------------------------------
// Checksum primitives (the one exception to "syscalls only": the profile under TCP load showed
// the TypeScript onesSum/copySum at ~30% of the daemon's time; src/codec keeps the TypeScript
// versions and a property test checks both agree).

// x86-64: an AVX2 clone of the summing loops, picked at load time where the CPU has it (other
// architectures, e.g. the arm64 prebuild, get the compiler's default vectorization).
#if defined(__x86_64__)
#define OVERLAY_SUM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define OVERLAY_SUM_CLONES
#endif

// Sum of the native-endian 32-bit words of p[0, n), n a multiple of 4, into 64 bits (no carry
// is lost below 2^32 words). Written so the compiler vectorizes it.
OVERLAY_SUM_CLONES
static uint64_t SumWords(const uint8_t* p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t a;
    memcpy(&a, p + i, 4);
    s += a;
  }
  return s;
}

// SumWords of p[0, n) while copying it to d (the ranges do not overlap): one pass, not two.
OVERLAY_SUM_CLONES
static uint64_t CopySumWords(uint8_t* __restrict d, const uint8_t* __restrict p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i += 4) {
    uint32_t a;
    memcpy(&a, p + i, 4);
    memcpy(d + i, &a, 4);
    s += a;
  }
  return s;
}

// Add the words of the tail p[m, n) (m a multiple of 4, n - m < 4) to s, fold to 16 bits, swap
// to big-endian order, add `initial` and fold again (0 only for an all-zero sum).
static uint32_t FinishSum(const uint8_t* p, size_t m, size_t n, uint64_t s, uint64_t initial) {
  for (; m + 2 <= n; m += 2) {
    uint16_t w;
    memcpy(&w, p + m, 2);
    s += w;
  }
  if (m < n) {
    uint16_t w = 0;
    memcpy(&w, p + m, 1);  // the odd byte in the first (high, big-endian) position
    s += w;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  s = ((s & 0xff) << 8) | (s >> 8);
#endif
  s += initial;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint32_t>(s);
}

// Internet ones-complement sum of p[0, n) as big-endian 16-bit words (an odd last byte is the
// high byte of a zero-padded word), plus `initial`, folded to 16 bits (0 only for an all-zero sum).
static uint32_t OnesSum(const uint8_t* p, size_t n, uint64_t initial) {
  size_t m = n & ~static_cast<size_t>(3);
  return FinishSum(p, m, n, SumWords(p, m), initial);
}

// Copy src[0, n) to dst and return OnesSum of the bytes (one pass unless the ranges overlap).
static uint32_t CopyOnesSum(uint8_t* dst, const uint8_t* src, size_t n, uint64_t initial) {
  if (dst < src + n && src < dst + n) {
    memmove(dst, src, n);
    return OnesSum(dst, n, initial);
  }
  size_t m = n & ~static_cast<size_t>(3);
  uint64_t s = CopySumWords(dst, src, m);
  memcpy(dst + m, src + m, n - m);
  return FinishSum(src, m, n, s, initial);
}

static bool SpanOf(const Napi::Value& v, size_t off, size_t len, uint8_t** out) {
  if (!v.IsTypedArray()) return false;
  Napi::TypedArray ta = v.As<Napi::TypedArray>();
  size_t bytes = ta.ByteLength();
  if (off > bytes || len > bytes - off) return false;
  *out = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset() + off;
  return true;
}

// Range lists: one call sums (or copies and sums) many ranges, so the per-call cost of N-API
// (about 70-110 ns, more than summing a 1.4 KB segment) is paid once per super-packet. `desc` is
// an Int32Array of CSUM_RANGE_STRIDE ints per range: source offset, destination offset, length,
// and the sum (in: the initial value, >= 0; out: the folded sum). Every range is checked before
// any is touched; -1 when one is outside its array (or desc is too short), else n.
static constexpr size_t CSUM_RANGE_STRIDE = 4;

static bool RangeDesc(const Napi::Value& v, size_t n, int32_t** out) {
  uint8_t* p;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) return false;
  if (n > SIZE_MAX / (4 * CSUM_RANGE_STRIDE) || !SpanOf(v, 0, n * 4 * CSUM_RANGE_STRIDE, &p)) return false;
  *out = reinterpret_cast<int32_t*>(p);
  return true;
}

static bool RangeOk(size_t bytes, int32_t off, int32_t len) {
  return off >= 0 && len >= 0 && static_cast<size_t>(off) <= bytes && static_cast<size_t>(len) <= bytes - off;
}

// csumOnesRanges(buf, desc, n) -> n, or -1 (desc's destination offsets are ignored).
static Napi::Value CsumOnesRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = info[2].As<Napi::Number>().Uint32Value();
  uint8_t* base;
  int32_t* d;
  if (!SpanOf(info[0], 0, 0, &base) || !RangeDesc(info[1], n, &d)) return Napi::Number::New(env, -1);
  size_t bytes = info[0].As<Napi::TypedArray>().ByteLength();
  for (size_t k = 0; k < n; k++) {
    const int32_t* r = d + k * CSUM_RANGE_STRIDE;
    if (!RangeOk(bytes, r[0], r[2]) || r[3] < 0) return Napi::Number::New(env, -1);
  }
  for (size_t k = 0; k < n; k++) {
    int32_t* r = d + k * CSUM_RANGE_STRIDE;
    r[3] = static_cast<int32_t>(OnesSum(base + r[0], r[2], static_cast<uint64_t>(r[3])));
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// csumCopyRanges(src, dst, desc, n) -> n, or -1.
static Napi::Value CsumCopyRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = info[3].As<Napi::Number>().Uint32Value();
  uint8_t *src, *dst;
  int32_t* d;
  if (!SpanOf(info[0], 0, 0, &src) || !SpanOf(info[1], 0, 0, &dst) || !RangeDesc(info[2], n, &d)) return Napi::Number::New(env, -1);
  size_t sb = info[0].As<Napi::TypedArray>().ByteLength(), db = info[1].As<Napi::TypedArray>().ByteLength();
  for (size_t k = 0; k < n; k++) {
    const int32_t* r = d + k * CSUM_RANGE_STRIDE;
    if (!RangeOk(sb, r[0], r[2]) || !RangeOk(db, r[1], r[2]) || r[3] < 0) return Napi::Number::New(env, -1);
  }
  for (size_t k = 0; k < n; k++) {
    int32_t* r = d + k * CSUM_RANGE_STRIDE;
    r[3] = static_cast<int32_t>(CopyOnesSum(dst + r[1], src + r[0], r[2], static_cast<uint64_t>(r[3])));
  }
  return Napi::Number::New(env, static_cast<double>(n));
}

// csumOnes(buf, off, len, initial) -> folded sum, or -1 when the range is outside buf.
static Napi::Value CsumOnes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t off = info[1].As<Napi::Number>().Uint32Value(), len = info[2].As<Napi::Number>().Uint32Value();
  uint8_t* p;
  if (!SpanOf(info[0], off, len, &p)) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, OnesSum(p, len, static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value())));
}

// csumCopy(src, srcOff, dst, dstOff, len, initial) -> folded sum of the copied bytes, or -1.
static Napi::Value CsumCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t so = info[1].As<Napi::Number>().Uint32Value(), dof = info[3].As<Napi::Number>().Uint32Value();
  size_t len = info[4].As<Napi::Number>().Uint32Value();
  uint8_t *src, *dst;
  if (!SpanOf(info[0], so, len, &src) || !SpanOf(info[2], dof, len, &dst)) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, CopyOnesSum(dst, src, len, static_cast<uint64_t>(info[5].As<Napi::Number>().Int64Value())));
}

// stampNow(f64, i): f64[i] = CLOCK_MONOTONIC microseconds (the timing mode's stage stamps, on the
// clock BatchIo stamps with; written into the array, so nothing is allocated).
static Napi::Value StampNow(const Napi::CallbackInfo& info) {
  if (info.Length() > 1 && info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    Napi::Float64Array a = info[0].As<Napi::Float64Array>();
    uint32_t i = info[1].As<Napi::Number>().Uint32Value();
    if (i < a.ElementLength()) a[i] = MonoUs();
  }
  return info.Env().Undefined();
}

static Napi::Value CloseFdJs(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsNumber()) CloseFd(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// udpOpen(family 4|6, address, port, reusePort, v6only) -> fd (non-blocking, bound); an IPv6
// socket takes IPv4 too (IPV6_V6ONLY 0) unless v6only
static Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsString()) return ThrowType(env, "udpOpen(family, address, port, reusePort)");
  int fam = info[0].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  std::string addr = info[1].As<Napi::String>().Utf8Value();
  int port = info[2].As<Napi::Number>().Int32Value();
  bool reuse = info.Length() > 3 && info[3].ToBoolean();
  bool only6 = info.Length() > 4 && info[4].ToBoolean();
  sockaddr_storage ss;
  socklen_t sl;
  if (!ParseAddr(addr, port, fam, &ss, &sl)) {
    Napi::Error e = Napi::Error::New(env, "invalid bind address '" + addr + "'");
    e.Set("code", Napi::String::New(env, "EINVAL"));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(fam, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  if (fam == AF_INET6) {
    int v6only = only6 ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
  }
  if (reuse) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "bind " + addr + ":" + std::to_string(port));
  }
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// udpConnect(fd, family, address, port)
static Napi::Value UdpConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int fam = info[1].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
  std::string addr = info[2].As<Napi::String>().Utf8Value();
  int port = info[3].As<Napi::Number>().Int32Value();
  sockaddr_storage ss;
  socklen_t sl;
  if (!ParseAddr(addr, port, fam, &ss, &sl)) return ThrowErrno(env, EINVAL, "connect " + addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0) return ThrowErrno(env, errno, "connect " + addr);
  return env.Undefined();
}

// sockPort(fd) -> bound local port
static Napi::Value SockPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) < 0) return ThrowErrno(env, errno, "getsockname");
  int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                      : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return Napi::Number::New(env, port);
}

// setSockBuf(fd, rcvbuf, sndbuf) -> [actualRcv, actualSnd]; uses the FORCE variants when permitted.
static Napi::Value SetSockBuf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rcv = info[1].As<Napi::Number>().Int32Value();
  int snd = info[2].As<Napi::Number>().Int32Value();
  if (rcv > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0) {
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) < 0) return ThrowErrno(env, errno, "SO_RCVBUF");
  }
  if (snd > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd)) < 0) {
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)) < 0) return ThrowErrno(env, errno, "SO_SNDBUF");
  }
  int ar = 0, as = 0;
  socklen_t l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &ar, &l);
  l = sizeof(int);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &as, &l);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, ar));
  out.Set(1u, Napi::Number::New(env, as));
  return out;
}

// nlOpen(protocol, groups = 0) -> fd of a raw netlink socket bound with a kernel-assigned port id,
// subscribed to the multicast groups in the `groups` bitmask (RTMGRP_*: notifications).
static Napi::Value NlOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int proto = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : NETLINK_ROUTE;
  uint32_t groups = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, proto);
  if (fd < 0) return ThrowErrno(env, errno, "socket(AF_NETLINK)");
  sockaddr_nl sa;
  memset(&sa, 0, sizeof(sa));
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = groups;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "bind(AF_NETLINK)");
  }
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  int buf = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// nlSend(fd, buf, len) -> bytes sent (to the kernel, pid 0)
static Napi::Value NlSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsBuffer()) return ThrowType(env, "nlSend(fd, buf, len)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  size_t len = info[2].As<Napi::Number>().Uint32Value();
  if (len > b.Length()) len = b.Length();
  sockaddr_nl sa;
  memset(&sa, 0, sizeof(sa));
  sa.nl_family = AF_NETLINK;
  ssize_t r;
  do {
    r = sendto(fd, b.Data(), len, 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(env, errno, "netlink send");
  return Napi::Number::New(env, static_cast<double>(r));
}

// nlRecv(fd, buf, timeoutMs) -> bytes received; throws ETIMEDOUT when nothing arrives in time.
static Napi::Value NlRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsBuffer()) return ThrowType(env, "nlRecv(fd, buf, timeoutMs)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  int timeout = info[2].As<Napi::Number>().Int32Value();
  pollfd p = {fd, POLLIN, 0};
  int pr;
  do {
    pr = poll(&p, 1, timeout);
  } while (pr < 0 && errno == EINTR);
  if (pr < 0) return ThrowErrno(env, errno, "netlink poll");
  if (pr == 0) return ThrowErrno(env, ETIMEDOUT, "netlink recv");
  ssize_t r;
  do {
    r = recv(fd, b.Data(), b.Length(), MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ThrowErrno(env, errno, "netlink recv");
  return Napi::Number::New(env, static_cast<double>(r));
}

// nlRecvNow(fd, buf) -> bytes of the next queued datagram (its full length, which may exceed
// buf.length when truncated), or -1 when nothing is queued. Never blocks.
static Napi::Value NlRecvNow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsBuffer()) return ThrowType(env, "nlRecvNow(fd, buf)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  ssize_t r;
  do {
    r = recv(fd, b.Data(), b.Length(), MSG_DONTWAIT | MSG_TRUNC);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, -1);
    return ThrowErrno(env, errno, "netlink recv");
  }
  return Napi::Number::New(env, static_cast<double>(r));
}

// unixDgramSend(path, buf) -> bytes sent: one datagram to the Unix datagram socket at `path`
// ('@name': abstract namespace), from a fresh socket closed right after. For sd_notify
// ($NOTIFY_SOCKET): node:dgram has no Unix datagram sockets.
static Napi::Value UnixDgramSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) return ThrowType(env, "unixDgramSend(path, buf)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (path.size() < 2 || path.size() >= sizeof(sa.sun_path)) return ThrowErrno(env, EINVAL, "unix socket path");
  memcpy(sa.sun_path, path.data(), path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket(AF_UNIX)");
  ssize_t r;
  do {
    r = sendto(fd, b.Data(), b.Length(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
  } while (r < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (r < 0) return ThrowErrno(env, err, "sendto(unix)");
  return Napi::Number::New(env, static_cast<double>(r));
}

// sendto(fd, buf) to the kernel on a libuv pool thread: rtnetlink runs the request inside
// sendmsg (taking rtnl_lock), so the event loop must not be the one waiting for it.
class NlSendWorker : public Napi::AsyncWorker {
 public:
  NlSendWorker(Napi::Function cb, int fd, Napi::Buffer<char> buf, size_t len)
      : Napi::AsyncWorker(cb, "overlay:nlSend"), fd_(fd), data_(buf.Data()), len_(len) {
    bufRef_ = Napi::Persistent(buf);
  }
  void Execute() override {
    sockaddr_nl sa;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    ssize_t r;
    do {
      r = sendto(fd_, data_, len_, 0, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) err_ = errno;
    else sent_ = r;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    bufRef_.Reset();
    Callback().MakeCallback(Receiver().Value(), {Napi::Number::New(env, err_), Napi::Number::New(env, static_cast<double>(sent_))});
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }

 private:
  int fd_;
  char* data_;
  size_t len_;
  int err_ = 0;
  ssize_t sent_ = 0;
  Napi::Reference<Napi::Buffer<char>> bufRef_;
};

// nlSendAsync(fd, buf, len, cb(errno, bytes)): errno 0 on success. The caller keeps the fd open until cb.
static Napi::Value NlSendAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[1].IsBuffer() || !info[3].IsFunction()) return ThrowType(env, "nlSendAsync(fd, buf, len, cb)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  size_t len = info[2].As<Napi::Number>().Uint32Value();
  if (len > b.Length()) len = b.Length();
  auto* w = new NlSendWorker(info[3].As<Napi::Function>(), fd, b, len);
  w->Queue();
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// FdWatch: readiness of one fd on the event loop (uv_poll); cb() when readable. Never reads
// and never closes the fd: the caller does both.
class FdWatch : public Napi::ObjectWrap<FdWatch> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FdWatch",
                       {InstanceMethod("start", &FdWatch::Start), InstanceMethod("stop", &FdWatch::Stop),
                        InstanceMethod("close", &FdWatch::Close), InstanceMethod("ref", &FdWatch::RefLoop),
                        InstanceMethod("unref", &FdWatch::UnrefLoop)});
  }
  FdWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatch>(info) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      ThrowType(info.Env(), "FdWatch(fd)");
      return;
    }
    fd_ = info[0].As<Napi::Number>().Int32Value();
  }
  ~FdWatch() override { ClosePoll(); }

 private:
  int fd_ = -1;
  bool started_ = false;
  PollHandle poll_;
  Napi::FunctionReference cb_;

  void ClosePoll() { poll_.Close(); }
  static void OnPoll(uv_poll_t* h, int status, int /*events*/) {
    FdWatch* self = static_cast<FdWatch*>(h->data);
    if (!self || !self->started_) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->cb_.MakeCallback(env.Global(), {Napi::Number::New(env, status < 0 ? -status : 0)});
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }
  // start(cb(errno)): watch for readability (errno 0, or the poll error).
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) return ThrowType(env, "start(callback)");
    if (fd_ < 0) return ThrowErrno(env, EBADF, "start");
    cb_ = Napi::Persistent(info[0].As<Napi::Function>());
    const char* what = "";
    int r = poll_.Start(env, fd_, this, OnPoll, &what);
    if (r < 0) return ThrowErrno(env, -r, what);
    if (!started_) {
      started_ = true;
      Ref();
    }
    return env.Undefined();
  }
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    if (started_) {
      started_ = false;
      Unref();
    }
    return info.Env().Undefined();
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ClosePoll();
    fd_ = -1;
    if (started_) {
      started_ = false;
      Unref();
    }
    if (!cb_.IsEmpty()) cb_.Reset();
    return info.Env().Undefined();
  }
  Napi::Value RefLoop(const Napi::CallbackInfo& info) {
    poll_.SetRef(true);
    return info.Env().Undefined();
  }
  Napi::Value UnrefLoop(const Napi::CallbackInfo& info) {
    poll_.SetRef(false);
    return info.Env().Undefined();
  }
};

// ---------------------------------------------------------------------------
// Descriptor hand-over (the supervisor and `overlayd --takeover`): adopting a TUN/TAP queue or a
// UDP socket inherited from another process, and a SOCK_SEQPACKET Unix socket that carries
// descriptors (SCM_RIGHTS) between processes.

// adoptFd(fd, kind "tun" | "udp") -> tun: { name, ifindex, tap, vnetHdr, multiQueue };
// udp: { family, port }. Checks that fd is what it claims, makes it non-blocking and close-on-exec,
// and tracks it (closeFd and BatchIo.close close it).
static Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) return ThrowType(env, "adoptFd(fd, 'tun' | 'udp')");
  int fd = info[0].As<Napi::Number>().Int32Value();
  std::string kind = info[1].As<Napi::String>().Utf8Value();
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return ThrowErrno(env, errno, "adopt fd " + std::to_string(fd));
  Napi::Object out = Napi::Object::New(env);
  if (kind == "tun") {
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) < 0) return ThrowErrno(env, errno, "TUNGETIFF fd " + std::to_string(fd));
    out.Set("name", Napi::String::New(env, ifr.ifr_name));
    out.Set("ifindex", Napi::Number::New(env, if_nametoindex(ifr.ifr_name)));
    out.Set("tap", Napi::Boolean::New(env, (ifr.ifr_flags & IFF_TAP) != 0));
    out.Set("vnetHdr", Napi::Boolean::New(env, (ifr.ifr_flags & IFF_VNET_HDR) != 0));
    out.Set("multiQueue", Napi::Boolean::New(env, (ifr.ifr_flags & IFF_MULTI_QUEUE) != 0));
  } else if (kind == "udp") {
    int type = 0;
    socklen_t l = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0) return ThrowErrno(env, errno, "SO_TYPE fd " + std::to_string(fd));
    sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) < 0) return ThrowErrno(env, errno, "getsockname");
    if (type != SOCK_DGRAM || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) return ThrowErrno(env, ENOTSOCK, "fd " + std::to_string(fd) + " is not a UDP socket");
    out.Set("family", Napi::Number::New(env, ss.ss_family == AF_INET6 ? 6 : 4));
    int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    out.Set("port", Napi::Number::New(env, port));
    char text[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, text, sizeof(text));
    else inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, text, sizeof(text));
    out.Set("address", Napi::String::New(env, text));
  } else {
    return ThrowType(env, "adoptFd: kind must be 'tun' or 'udp'");
  }
  if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return ThrowErrno(env, errno, "F_SETFL");
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  TrackFd(fd);
  return out;
}

static bool UnixAddr(const std::string& path, sockaddr_un* sa) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa->sun_path)) return false;
  memcpy(sa->sun_path, path.data(), path.size());
  return true;
}

// unixListen(path) -> fd: a non-blocking SOCK_SEQPACKET socket listening at path, mode 0600.
static Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "unixListen(path)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  if (!UnixAddr(path, &sa)) return ThrowErrno(env, ENAMETOOLONG, "unix socket " + path);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket(AF_UNIX)");
  mode_t old = umask(077);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  umask(old);
  if (r < 0 || listen(fd, 4) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "bind " + path);
  }
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// unixConnect(path) -> fd (non-blocking SOCK_SEQPACKET, connected).
static Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return ThrowType(env, "unixConnect(path)");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  sockaddr_un sa;
  if (!UnixAddr(path, &sa)) return ThrowErrno(env, ENAMETOOLONG, "unix socket " + path);
  // non-blocking from the start: a listener whose backlog is full (one that stopped accepting)
  // answers EAGAIN at once instead of blocking this thread in connect()
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket(AF_UNIX)");
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "connect " + path);
  }
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// unixAccept(fd) -> the accepted connection's fd (non-blocking), or -1 when none is pending.
static Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info);
  int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return Napi::Number::New(env, -1);
    return ThrowErrno(env, errno, "accept");
  }
  TrackFd(c);
  return Napi::Number::New(env, c);
}

// unixSend(fd, buf, fds[]) -> bytes sent: one message, with the descriptors as SCM_RIGHTS.
static Napi::Value UnixSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsBuffer() || !info[2].IsArray()) return ThrowType(env, "unixSend(fd, buf, fds[])");
  int fd = ArgFd(info);
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Array a = info[2].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < a.Length() && i < 16; i++) fds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  iovec iov{b.Data(), b.Length()};
  msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  std::vector<uint64_t> ctrl((CMSG_SPACE(sizeof(int) * 16) + 7) / 8);
  if (!fds.empty()) {
    mh.msg_control = ctrl.data();
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);
  if (r < 0) return ThrowErrno(env, errno, "sendmsg");
  return Napi::Number::New(env, static_cast<double>(r));
}

// unixRecv(fd, buf) -> { len, fds } (len 0: the peer closed), or null when nothing is queued.
// Received descriptors are close-on-exec and tracked.
static Napi::Value UnixRecv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsBuffer()) return ThrowType(env, "unixRecv(fd, buf)");
  int fd = ArgFd(info);
  Napi::Buffer<uint8_t> b = info[1].As<Napi::Buffer<uint8_t>>();
  iovec iov{b.Data(), b.Length()};
  std::vector<uint64_t> ctrl((CMSG_SPACE(sizeof(int) * 16) + 7) / 8);
  msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctrl.data();
  mh.msg_controllen = ctrl.size() * 8;
  ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return env.Null();
    return ThrowErrno(env, errno, "recvmsg");
  }
  Napi::Array fds = Napi::Array::New(env);
  uint32_t n = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int x;
      memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      TrackFd(x);
      fds.Set(n++, Napi::Number::New(env, x));
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("len", Napi::Number::New(env, static_cast<double>(r)));
  out.Set("fds", fds);
  if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) out.Set("truncated", Napi::Boolean::New(env, true));
  return out;
}

// tcpListen(address, port) -> fd: a non-blocking listening TCP socket (SO_REUSEADDR), for a
// server another process serves (the supervisor holds it; its packet process accepts on it).
static Napi::Value TcpListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) return ThrowType(env, "tcpListen(address, port)");
  std::string addr = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  int fam = addr.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  sockaddr_storage ss;
  socklen_t sl;
  if (!ParseAddr(addr, port, fam, &ss, &sl)) return ThrowErrno(env, EINVAL, "listen " + addr);
  int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) < 0 || listen(fd, 511) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, err, "listen " + addr + ":" + std::to_string(port));
  }
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// dupFd(fd) -> a duplicate (close-on-exec, tracked): one more descriptor of the same socket or queue.
static Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = fcntl(ArgFd(info), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return ThrowErrno(env, errno, "dup");
  TrackFd(fd);
  return Napi::Number::New(env, fd);
}

// trackFd(fd): let closeFd close a descriptor this addon did not open (an inherited one).
static Napi::Value TrackFdJs(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsNumber()) TrackFd(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, CloseAllFds, nullptr);
  exports.Set("BatchIo", BatchIo::Init(env));
  exports.Set("tunOpen", Napi::Function::New(env, TunOpen));
  exports.Set("tunSetPersist", Napi::Function::New(env, TunSetPersist));
  exports.Set("closeFd", Napi::Function::New(env, CloseFdJs));
  exports.Set("tunSetVnetHdrSz", Napi::Function::New(env, TunSetVnetHdrSz));
  exports.Set("tunSetOffload", Napi::Function::New(env, TunSetOffload));
  exports.Set("udpGsoProbe", Napi::Function::New(env, UdpGsoProbe));
  exports.Set("udpSetGro", Napi::Function::New(env, UdpSetGro));
  exports.Set("udpSetNoCheck", Napi::Function::New(env, UdpSetNoCheck));
  exports.Set("udpSetTimestamp", Napi::Function::New(env, UdpSetTimestamp));
  exports.Set("stampNow", Napi::Function::New(env, StampNow));
  exports.Set("udpSetPmtuDisc", Napi::Function::New(env, UdpSetPmtuDisc));
  exports.Set("csumOnes", Napi::Function::New(env, CsumOnes));
  exports.Set("csumCopy", Napi::Function::New(env, CsumCopy));
  exports.Set("csumOnesRanges", Napi::Function::New(env, CsumOnesRanges));
  exports.Set("csumCopyRanges", Napi::Function::New(env, CsumCopyRanges));
  exports.Set("CSUM_RANGE_STRIDE", Napi::Number::New(env, CSUM_RANGE_STRIDE));
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen));
  exports.Set("udpConnect", Napi::Function::New(env, UdpConnect));
  exports.Set("sockPort", Napi::Function::New(env, SockPort));
  exports.Set("setSockBuf", Napi::Function::New(env, SetSockBuf));
  exports.Set("nlOpen", Napi::Function::New(env, NlOpen));
  exports.Set("unixDgramSend", Napi::Function::New(env, UnixDgramSend));
  exports.Set("nlSend", Napi::Function::New(env, NlSend));
  exports.Set("nlRecv", Napi::Function::New(env, NlRecv));
  exports.Set("nlRecvNow", Napi::Function::New(env, NlRecvNow));
  exports.Set("nlSendAsync", Napi::Function::New(env, NlSendAsync));
  exports.Set("FdWatch", FdWatch::Init(env));
  exports.Set("adoptFd", Napi::Function::New(env, AdoptFd));
  exports.Set("trackFd", Napi::Function::New(env, TrackFdJs));
  exports.Set("dupFd", Napi::Function::New(env, DupFd));
  exports.Set("tcpListen", Napi::Function::New(env, TcpListen));
  exports.Set("unixListen", Napi::Function::New(env, UnixListen));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept));
  exports.Set("unixSend", Napi::Function::New(env, UnixSend));
  exports.Set("unixRecv", Napi::Function::New(env, UnixRecv));
  exports.Set("DESC_STRIDE", Napi::Number::New(env, DESC_STRIDE));
  return exports;
}

NODE_API_MODULE(overlay_native, Init)
