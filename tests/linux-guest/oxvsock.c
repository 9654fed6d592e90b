/*
 * oxvsock: a vsock stream between stdin/stdout and a peer, for the oxvirt Linux test
 * guest (busybox has no vsock applet). build.sh compiles it with `gcc -static` into
 * the initramfs as /bin/oxvsock.
 *
 *   oxvsock [-t SECS] connect CID PORT   connect to CID:PORT (the host is CID 2)
 *   oxvsock [-t SECS] listen PORT        accept one connection on PORT; once listening,
 *                                        prints "OXCHECK vsock-listen port=PORT" on stderr
 *
 * Copies stdin to the socket until stdin ends and the socket to stdout until the peer
 * closes the stream; the sending side is not shut down at stdin's end (the peer, which
 * knows how many bytes to expect, decides when the stream ends). Exits 0 when the peer
 * closed after all of stdin was sent, 1 on an error or after SECS seconds (default 300)
 * in all, a bound on every wait in here.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int left_ms(void)
{
	double l = deadline - now();
	return l <= 0 ? 0 : (int)(l * 1000) + 1;
}

static void die(const char *what)
{
	fprintf(stderr, "oxvsock: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int do_connect(unsigned cid, unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	/* The default connect timeout is 2 s; a loaded emulated-KVM host can take longer. */
	struct timeval tv = { .tv_sec = 60 };
	for (;;) {
		int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket(AF_VSOCK)");
		setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof tv);
		if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
			return fd;
		/* A reset (nobody listening yet) is retried until the deadline. */
		if ((errno != ECONNRESET && errno != ECONNREFUSED && errno != ETIMEDOUT) ||
		    left_ms() == 0)
			die("connect");
		close(fd);
		usleep(500000);
	}
}

static int do_listen(unsigned port)
{
	struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
				 .svm_port = port };
	int l = socket(AF_VSOCK, SOCK_STREAM, 0);
	if (l < 0)
		die("socket(AF_VSOCK)");
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	if (listen(l, 1) < 0)
		die("listen");
	fprintf(stderr, "OXCHECK vsock-listen port=%u\n", port);
	struct pollfd p = { .fd = l, .events = POLLIN };
	int r = poll(&p, 1, left_ms());
	if (r <= 0) {
		errno = r == 0 ? ETIMEDOUT : errno;
		die("waiting for a connection");
	}
	int fd = accept(l, NULL, NULL);
	if (fd < 0)
		die("accept");
	close(l);
	return fd;
}

int main(int argc, char **argv)
{
	double secs = 300;
	if (argc > 2 && strcmp(argv[1], "-t") == 0) {
		secs = atof(argv[2]);
		argv += 2;
		argc -= 2;
	}
	deadline = now() + secs;
	int fd;
	if (argc == 4 && strcmp(argv[1], "connect") == 0)
		fd = do_connect((unsigned)strtoul(argv[2], NULL, 0), (unsigned)strtoul(argv[3], NULL, 0));
	else if (argc == 3 && strcmp(argv[1], "listen") == 0)
		fd = do_listen((unsigned)strtoul(argv[2], NULL, 0));
	else {
		fprintf(stderr, "usage: oxvsock [-t SECS] connect CID PORT | listen PORT\n");
		return 2;
	}

	static char buf[65536];
	struct pollfd p[2] = { { .fd = 0, .events = POLLIN }, { .fd = fd, .events = POLLIN } };
	int stdin_done = 0;
	for (;;) {
		int r = poll(p, 2, left_ms());
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			errno = r == 0 ? ETIMEDOUT : errno;
			die("waiting for data");
		}
		if (p[0].revents) {
			ssize_t n = read(0, buf, sizeof buf);
			if (n < 0 && errno != EINTR)
				die("reading stdin");
			if (n == 0) {
				stdin_done = 1;
				p[0].fd = -1;
			} else if (n > 0 && write_all(fd, buf, (size_t)n) < 0)
				die("writing to the socket");
		}
		if (p[1].revents) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n < 0 && errno != EINTR)
				die("reading the socket");
			if (n == 0)
				break;
			if (n > 0 && write_all(1, buf, (size_t)n) < 0)
				die("writing stdout");
		}
	}
	close(fd);
	if (!stdin_done) {
		errno = 0;
		die("the peer closed before all of stdin was sent");
	}
	return 0;
}
