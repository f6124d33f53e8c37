/* Opens N TCP connections to one server port and holds them (benchmarks/scale.py).
 *
 *   scale_client HOST PORT N SOURCES INFLIGHT ECHO
 *
 * Connections are bound to SOURCES loopback addresses 127.0.0.2 ... (Linux routes all of
 * 127/8 to lo; IP_BIND_ADDRESS_NO_PORT leaves the port to connect(), so each source address
 * has the whole ephemeral range per destination): one source gives ~28,000 ports, 100,000
 * connections need four or more. At most INFLIGHT connections are being set up at once. With
 * ECHO 1 each connection sends one byte and waits for it back (accepted and served, not only
 * in the kernel's backlog); with ECHO 0 it is done once connected.
 *
 * Prints one JSON line {"opened": n, "failed": f, "seconds": s} (s: first connect() to the
 * last connection done), then waits for a line (or EOF) on stdin, closes everything and
 * exits. Raises its own RLIMIT_NOFILE (hard too, when root) to fit N.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { CONNECTING = 1, SENT = 2 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void raise_nofile(long need) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((long)rl.rlim_cur >= need) return;
    if ((long)rl.rlim_max < need) {
        struct rlimit hard = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &hard) == 0) return;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT N SOURCES INFLIGHT ECHO\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long n = atol(argv[3]);
    int sources = atoi(argv[4]);
    long inflight_max = atol(argv[5]);
    int echo = atoi(argv[6]);
    raise_nofile(n + 64);

    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &dst.sin_addr);
    int ep = epoll_create1(0);
    int *fds = calloc(n, sizeof(int));
    unsigned char *state = calloc(n, 1);
    struct epoll_event *events = calloc(1024, sizeof(struct epoll_event));
    long started = 0, done = 0, failed = 0, inflight = 0;
    double t0 = now();

    while (done + failed < n) {
        while (started < n && inflight < inflight_max) {
            long i = started++;
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (fd < 0) { perror("socket"); failed++; continue; }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (sources > 0) {
                struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
                src.sin_addr.s_addr = htonl(0x7f000002 + (uint32_t)(i % sources));
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
                    perror("bind"); close(fd); failed++; continue;
                }
            }
            if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
                if (failed < 5) perror("connect");
                close(fd); failed++; continue;
            }
            fds[i] = fd;
            state[i] = CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            inflight++;
        }
        int k = epoll_wait(ep, events, 1024, 30000);
        if (k == 0) { fprintf(stderr, "stalled: %ld in flight\n", inflight); break; }
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            int fd = fds[i];
            int err = 0;
            socklen_t len = sizeof err;
            if (state[i] == CONNECTING) {
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err == 0 && echo) {
                    if (write(fd, "x", 1) == 1) {
                        state[i] = SENT;
                        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
                        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                        continue;
                    }
                    err = errno;
                }
            } else {
                char c;
                if (read(fd, &c, 1) != 1) err = errno ? errno : ECONNRESET;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            inflight--;
            state[i] = 0;
            if (err) {
                if (failed < 5) fprintf(stderr, "connection %ld: %s\n", i, strerror(err));
                close(fd); fds[i] = -1; failed++;
            } else {
                done++;
            }
        }
    }
    printf("{\"opened\": %ld, \"failed\": %ld, \"seconds\": %.6f}\n", done, failed, now() - t0);
    fflush(stdout);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) { /* EOF: close too */ }
    for (long i = 0; i < started; i++)
        if (fds[i] > 0) close(fds[i]);
    return failed ? 1 : 0;
}
