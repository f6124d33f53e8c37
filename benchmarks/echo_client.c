/* echo_client: a small epoll ping-pong load generator, so that in benchmarks/echo.py and
 * benchmarks/udp.py the server under test, not the client, is the bottleneck.
 *
 *   echo_client HOST PORT CONNS DURATION_S MSG_SIZE WARMUP_S [udp]
 *
 * Every connection (with "udp": every connected UDP socket) sends MSG_SIZE bytes, waits until
 * MSG_SIZE bytes came back, records the round-trip latency and repeats. Messages completed
 * during the warm-up are not counted. A UDP datagram unanswered after 200 ms counts as lost
 * and is sent again. Prints one JSON line: conns, msgs, seconds, msgs_per_s, p50_us, p99_us,
 * max_us, errors, lost.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 1000000 /* 1 us buckets up to 1 s; slower answers land in the last one */

typedef struct {
    int fd;
    size_t got;
    uint64_t sent_at;
} conn_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t *hist;
static uint64_t counted, errors_seen;

static double percentile(double p) {
    uint64_t target = (uint64_t)(p * (double)counted), seen = 0;
    for (size_t i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen > target) return (double)i;
    }
    return (double)(BUCKETS - 1);
}

static int send_msg(conn_t *c, const char *msg, size_t size) {
    c->got = 0;
    c->sent_at = now_ns();
    ssize_t n = send(c->fd, msg, size, MSG_NOSIGNAL);
    return n == (ssize_t)size ? 0 : -1; /* 64-byte messages always fit the socket buffer */
}

int main(int argc, char **argv) {
    if (argc != 7 && !(argc == 8 && strcmp(argv[7], "udp") == 0)) {
        fprintf(stderr, "usage: %s HOST PORT CONNS DURATION_S MSG_SIZE WARMUP_S [udp]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), conns = atoi(argv[3]);
    double duration = atof(argv[4]), warmup = atof(argv[6]);
    size_t size = (size_t)atol(argv[5]);
    int udp = argc == 8;
    uint64_t lost = 0, last_scan = 0;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    hist = calloc(BUCKETS, sizeof(uint64_t));
    char *msg = malloc(size), *buf = malloc(65536);
    memset(msg, 'x', size);
    conn_t *cs = calloc((size_t)conns, sizeof(conn_t));
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);

    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            perror("connect");
            return 1;
        }
        if (!udp) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    for (int i = 0; i < conns; i++)
        if (send_msg(&cs[i], msg, size) != 0) errors_seen++;

    uint64_t start = now_ns(), measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t end = measure_from + (uint64_t)(duration * 1e9);
    struct epoll_event events[512];
    uint64_t t = start;
    while (t < end) {
        int n = epoll_wait(ep, events, 512, 100);
        t = now_ns();
        if (udp && t - last_scan > 50000000ull) { /* resend datagrams lost on the way */
            last_scan = t;
            for (int i = 0; i < conns; i++)
                if (t - cs[i].sent_at > 200000000ull) {
                    lost++;
                    if (send_msg(&cs[i], msg, size) != 0) errors_seen++;
                }
        }
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            ssize_t r = recv(c->fd, buf, 65536, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                if (udp && r < 0 && errno == ECONNREFUSED) { errors_seen++; continue; }
                errors_seen++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (size_t)r;
            if (c->got < size) continue;
            if (t >= measure_from) {
                uint64_t us = (t - c->sent_at) / 1000;
                hist[us < BUCKETS ? us : BUCKETS - 1]++;
                counted++;
            }
            if (send_msg(c, msg, size) != 0) errors_seen++;
        }
    }
    double secs = duration;
    double maxv = 0;
    for (size_t i = BUCKETS; i-- > 0;)
        if (hist[i]) { maxv = (double)i; break; }
    printf("{\"conns\": %d, \"msgs\": %llu, \"seconds\": %.3f, \"msgs_per_s\": %.1f, "
           "\"p50_us\": %.0f, \"p99_us\": %.0f, \"max_us\": %.0f, \"errors\": %llu, \"lost\": %llu}\n",
           conns, (unsigned long long)counted, secs, (double)counted / secs, percentile(0.50),
           percentile(0.99), maxv, (unsigned long long)errors_seen,
           (unsigned long long)lost);
    for (int i = 0; i < conns; i++) close(cs[i].fd);
    return 0;
}
