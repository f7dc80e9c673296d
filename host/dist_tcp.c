/* The TCP transport for launches without MPI: a star around rank 0.
 *
 * Rendezvous: rank 0 listens on MASTER_ADDR:MASTER_PORT; every other rank
 * connects (retrying until the connect deadline) and says hello (rank, world
 * size, host name); rank 0 checks them, works out local ranks from the host
 * names when LOCAL_RANK is unset, and answers each with a welcome. The
 * listening socket is then closed: the store's only job after that is to
 * carry collectives (and the NCCL id, through dist_broadcast).
 *
 * Every message is a header (magic, kind, op name, step, sequence number,
 * payload size) and a payload. The receiver checks the header against the
 * collective it is in, so ranks that call different collectives stop with
 * a message instead of reading garbage. An ABORT message carries a failed
 * rank's error line to its peers. Hosts are assumed to share byte order.
 *
 * Every send and receive polls with the current collective's deadline; a
 * closed or reset connection means the peer exited or died. */
#include "dist_impl.h"
#include "../kernels/check.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TCP_MAGIC 0x434d4941u /* "AIMC" */
#define TCP_VERSION 1u
#define TCP_OP_LEN 24
#define TCP_HOST_LEN 64
#define TCP_REASON_MAX 1024

enum { MSG_HELLO = 1, MSG_WELCOME, MSG_GATHER, MSG_BCAST, MSG_ABORT };

typedef struct msg_header {
    uint32_t magic, kind;
    char op[TCP_OP_LEN];
    int64_t step;
    uint64_t seq, bytes;
} msg_header;

typedef struct hello_body {
    uint32_t version;
    int32_t rank, world;
    char host[TCP_HOST_LEN];
} hello_body;

/* fds[r]: rank 0 holds one socket per rank (fds[0] unused); every other
 * rank holds fds[0], its socket to rank 0. mid_send[r]: a message to r is
 * half written (an abort notice there would corrupt the stream). */
static int *g_fds;
static unsigned char *g_mid_send;
static uint64_t g_seq;
static char g_relay[TCP_REASON_MAX]; /* a received abort reason, passed on as is */

static void peer_gone(int peer) __attribute__((noreturn));
static void peer_gone(int peer) {
    dist_fail(": rank %d closed its connection (it exited or was killed)", peer);
}

/* Poll timeout in ms for the time left, capped so the clock is rechecked. */
static int poll_ms(void) {
    double left = dist_call_left();
    if (left <= 0) return 0;
    return left > 1.0 ? 1000 : (int)(left * 1000) + 1;
}

/* Waits until fd is ready for `events` or the deadline passes (-> error
 * naming peer). */
static void wait_ready(int fd, short events, int peer) {
    for (;;) {
        if (dist_call_left() <= 0) dist_fail_timeout(peer);
        struct pollfd p = {fd, events, 0};
        int k = poll(&p, 1, poll_ms());
        if (k < 0 && errno != EINTR) dist_fail(": poll on the socket of rank %d: %s", peer, strerror(errno));
        if (k > 0) return; /* ready, or an error/hangup that the next call reports */
    }
}

static void send_all(int peer, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        wait_ready(g_fds[peer], POLLOUT, peer);
        ssize_t k = send(g_fds[peer], p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) peer_gone(peer);
        if (k < 0) dist_fail(": sending to rank %d: %s", peer, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

static void recv_all(int peer, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        wait_ready(g_fds[peer], POLLIN, peer);
        ssize_t k = recv(g_fds[peer], p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k == 0 || (k < 0 && errno == ECONNRESET)) peer_gone(peer);
        if (k < 0) dist_fail(": receiving from rank %d: %s", peer, strerror(errno));
        p += k;
        n -= (size_t)k;
    }
}

static msg_header make_header(uint32_t kind, uint64_t bytes) {
    msg_header h;
    memset(&h, 0, sizeof h);
    h.magic = TCP_MAGIC;
    h.kind = kind;
    snprintf(h.op, sizeof h.op, "%s", g_dist_call.op);
    h.step = g_dist_call.step;
    h.seq = g_seq;
    h.bytes = bytes;
    return h;
}

static void send_msg(int peer, uint32_t kind, const void *payload, size_t bytes) {
    msg_header h = make_header(kind, bytes);
    g_mid_send[peer] = 1;
    send_all(peer, &h, sizeof h);
    send_all(peer, payload, bytes);
    g_mid_send[peer] = 0;
}

static const char *step_text(int64_t step, char *buf, size_t n) {
    if (step >= 0) snprintf(buf, n, "at step %lld", (long long)step);
    else snprintf(buf, n, "during setup");
    return buf;
}

/* A peer's abort notice: this rank stops too, quoting the peer's line. */
static void on_abort(int peer, const msg_header *h) __attribute__((noreturn));
static void on_abort(int peer, const msg_header *h) {
    size_t n = h->bytes < TCP_REASON_MAX - 1 ? (size_t)h->bytes : TCP_REASON_MAX - 1;
    char reason[TCP_REASON_MAX];
    recv_all(peer, reason, n);
    reason[n] = 0;
    snprintf(g_relay, sizeof g_relay, "%s", reason);
    dist_fail(": stopping because another rank failed: %s", reason);
}

/* Reads a header from peer and checks it is the expected message of the
 * current collective. */
static void recv_header(int peer, uint32_t kind, uint64_t bytes) {
    msg_header h;
    recv_all(peer, &h, sizeof h);
    if (h.magic != TCP_MAGIC) dist_fail(": rank %d sent a malformed message (bad magic)", peer);
    if (h.kind == MSG_ABORT) on_abort(peer, &h);
    h.op[TCP_OP_LEN - 1] = 0;
    if (h.kind != kind || h.seq != g_seq || h.step != g_dist_call.step ||
        strncmp(h.op, g_dist_call.op, TCP_OP_LEN - 1)) {
        char st[48];
        dist_fail(": rank %d is in %s %s (its collective #%llu, this rank's #%llu): every rank "
                  "must call the same collectives in the same order",
                  peer, h.op, step_text(h.step, st, sizeof st), (unsigned long long)h.seq,
                  (unsigned long long)g_seq);
    }
    if (h.bytes != bytes)
        dist_fail(": rank %d sent %llu bytes where this rank expected %llu (ranks disagree on "
                  "the counts)", peer, (unsigned long long)h.bytes, (unsigned long long)bytes);
}

/* ---- collectives ---- */

void dist_tcp_gather0(const void *send, void *recv, const size_t *bytes) {
    int me = g_dist.rank;
    g_seq++;
    if (me != 0) {
        send_msg(0, MSG_GATHER, send, bytes[me]);
        return;
    }
    size_t off = bytes[0];
    if (bytes[0]) memmove(recv, send, bytes[0]);
    for (int r = 1; r < g_dist.world; r++) { /* rank order: deterministic and simple */
        recv_header(r, MSG_GATHER, bytes[r]);
        recv_all(r, (char *)recv + off, bytes[r]);
        off += bytes[r];
    }
}

void dist_tcp_bcast0(void *buf, size_t bytes) {
    g_seq++;
    if (g_dist.rank != 0) {
        recv_header(0, MSG_BCAST, bytes);
        recv_all(0, buf, bytes);
        return;
    }
    for (int r = 1; r < g_dist.world; r++) send_msg(r, MSG_BCAST, buf, bytes);
}

/* Best effort, never blocks: a peer that is gone or whose stream is
 * mid-message simply learns from the closed socket instead. */
static void notify_one(int peer, const char *reason) {
    if (g_fds[peer] < 0 || g_mid_send[peer]) return;
    size_t n = strlen(reason);
    if (n > TCP_REASON_MAX - 1) n = TCP_REASON_MAX - 1;
    msg_header h = make_header(MSG_ABORT, n);
    char buf[sizeof h + TCP_REASON_MAX];
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, reason, n);
    if (send(g_fds[peer], buf, sizeof h + n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
        shutdown(g_fds[peer], SHUT_WR);
}

void dist_tcp_notify_abort(const char *reason) {
    if (!g_fds) return;
    const char *text = g_relay[0] ? g_relay : reason; /* pass the first failure on, unnested */
    if (g_dist.rank == 0)
        for (int r = 1; r < g_dist.world; r++) notify_one(r, text);
    else
        notify_one(0, text);
}

void dist_tcp_close(void) {
    if (!g_fds) return;
    for (int r = 0; r < g_dist.world; r++)
        if (g_fds[r] >= 0) close(g_fds[r]);
    free(g_fds);
    free(g_mid_send);
    g_fds = NULL;
    g_mid_send = NULL;
    g_seq = 0;
}

/* ---- rendezvous ---- */

static void tune_socket(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static struct addrinfo *resolve(const char *addr, const char *port) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(addr, port, &hints, &res);
    if (e) dist_fail(": MASTER_ADDR '%s' / MASTER_PORT '%s' do not resolve: %s", addr, port, gai_strerror(e));
    return res;
}

static int is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        static const struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;
        return !memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &lo, sizeof lo);
    }
    return 0;
}

/* Rank 0's listening socket: on MASTER_ADDR itself when it is a loopback
 * address (single-host runs and tests stay off the network), else on every
 * interface, since MASTER_ADDR may name this host differently here (e.g.
 * 127.0.1.1 in /etc/hosts) than on the other nodes. */
static int listen_on(const char *addr, const char *port) {
    struct addrinfo *res = resolve(addr, port);
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    memcpy(&sa, res->ai_addr, res->ai_addrlen);
    socklen_t len = res->ai_addrlen;
    int family = res->ai_family;
    freeaddrinfo(res);
    if (!is_loopback((struct sockaddr *)&sa)) {
        if (family == AF_INET) ((struct sockaddr_in *)&sa)->sin_addr.s_addr = htonl(INADDR_ANY);
        else ((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_any;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) dist_fail(": socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, len) || listen(fd, g_dist.world + 8))
        dist_fail(": cannot listen on MASTER_ADDR %s port %s: %s", addr, port, strerror(errno));
    tune_socket(fd);
    return fd;
}

/* One connection attempt; returns the socket, or -1 (with errno) to retry. */
static int try_connect(const char *addr, const char *port) {
    struct addrinfo *res = resolve(addr, port);
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) dist_fail(": socket: %s", strerror(errno));
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc && errno == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int k = poll(&p, 1, poll_ms());
        int err = 0;
        socklen_t el = sizeof err;
        if (k <= 0) err = ETIMEDOUT;
        else getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
        rc = err ? -1 : 0;
        errno = err;
    }
    if (rc) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    tune_socket(fd);
    return fd;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Non-zero ranks: connect to rank 0 until the deadline (it may start later). */
static int connect_to_root(const char *addr, const char *port) {
    int last_err = 0;
    while (dist_call_left() > 0) {
        int fd = try_connect(addr, port);
        if (fd >= 0) return fd;
        last_err = errno;
        sleep_ms(100);
    }
    dist_fail(" timed out after %g s waiting for rank 0 at %s:%s (%s)",
              g_dist_call.deadline - g_dist_call.start, addr, port,
              last_err ? strerror(last_err) : "no answer");
}

static hello_body my_hello(void) {
    hello_body b;
    memset(&b, 0, sizeof b);
    b.version = TCP_VERSION;
    b.rank = g_dist.rank;
    b.world = g_dist.world;
    gethostname(b.host, sizeof b.host - 1);
    return b;
}

/* Reads exactly n bytes from a connection that has not identified itself
 * yet; 0 when it closes or the deadline passes (the caller drops it). */
static int recv_unknown(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        if (dist_call_left() <= 0) return 0;
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, poll_ms()) <= 0) continue;
        ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

/* Rank 0: reads a new connection's hello; returns its rank, or -1 for a
 * connection that is not an aimc rank (ignored). */
static int read_hello(int fd, hello_body *hosts) {
    msg_header h;
    hello_body b;
    if (!recv_unknown(fd, &h, sizeof h)) return -1;
    if (h.magic != TCP_MAGIC || h.kind != MSG_HELLO || h.bytes != sizeof b) return -1;
    if (!recv_unknown(fd, &b, sizeof b)) return -1;
    b.host[TCP_HOST_LEN - 1] = 0;
    if (b.version != TCP_VERSION)
        dist_fail(": a rank speaks protocol version %u, rank 0 speaks %u (mixed aimc builds?)",
                  b.version, TCP_VERSION);
    if (b.world != g_dist.world)
        dist_fail(": rank %d says WORLD_SIZE=%d but rank 0 has WORLD_SIZE=%d", b.rank, b.world,
                  g_dist.world);
    if (b.rank <= 0 || b.rank >= g_dist.world || g_fds[b.rank] >= 0)
        dist_fail(": two processes claim rank %d (or it is out of range): check RANK", b.rank);
    hosts[b.rank] = b;
    return b.rank;
}

static void fail_missing_ranks(const hello_body *hosts) __attribute__((noreturn));
static void fail_missing_ranks(const hello_body *hosts) {
    int missing = 0, first = -1;
    for (int r = 1; r < g_dist.world; r++)
        if (!hosts[r].version) {
            missing++;
            if (first < 0) first = r;
        }
    dist_fail(" timed out after %g s waiting for rank %d (%d of %d ranks never connected)",
              g_dist_call.deadline - g_dist_call.start, first, missing, g_dist.world);
}

/* Local rank of r: how many lower ranks share its host name. */
static int local_rank_of(const hello_body *hosts, int r) {
    int n = 0;
    for (int q = 0; q < r; q++) n += !strcmp(hosts[q].host, hosts[r].host);
    return n;
}

static void accept_all(int lfd, int *local_rank) {
    hello_body *hosts = aimc_xcalloc((size_t)g_dist.world, sizeof *hosts);
    hosts[0] = my_hello();
    for (int joined = 1; joined < g_dist.world;) {
        if (dist_call_left() <= 0) fail_missing_ranks(hosts);
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, poll_ms()) <= 0) continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        tune_socket(fd);
        int r = read_hello(fd, hosts);
        if (r < 0) {
            close(fd);
            continue;
        }
        g_fds[r] = fd;
        joined++;
    }
    if (*local_rank < 0) *local_rank = local_rank_of(hosts, 0);
    for (int r = 1; r < g_dist.world; r++) {
        int32_t lr = local_rank_of(hosts, r);
        send_msg(r, MSG_WELCOME, &lr, sizeof lr);
    }
    free(hosts);
}

void dist_tcp_connect(const char *addr, const char *port, double connect_timeout_s,
                      int *local_rank) {
    int world = g_dist.world;
    g_fds = malloc(sizeof(int) * (size_t)world);
    g_mid_send = calloc((size_t)world, 1);
    AIMC_CHECK(g_fds && g_mid_send, "out of memory");
    for (int r = 0; r < world; r++) g_fds[r] = -1;
    dist_call_begin("rendezvous", DIST_SETUP);
    g_dist_call.deadline = g_dist_call.start + connect_timeout_s;
    if (g_dist.rank == 0) {
        int lfd = listen_on(addr, port);
        accept_all(lfd, local_rank);
        close(lfd);
        return;
    }
    g_fds[0] = connect_to_root(addr, port);
    hello_body b = my_hello();
    send_msg(0, MSG_HELLO, &b, sizeof b);
    int32_t lr;
    recv_header(0, MSG_WELCOME, sizeof lr);
    recv_all(0, &lr, sizeof lr);
    if (*local_rank < 0) *local_rank = lr;
}
