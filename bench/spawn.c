/*
 * spawn OUTFILE CMD [ARGS...]: runs CMD and writes its exit code, peak RSS
 * (wait4 ru_maxrss, KiB) and CPU time (user + system, µs) to OUTFILE.
 *
 * A child's ru_maxrss also counts the address space it had before exec, i.e. the
 * parent's at fork time: measured straight from Python, every VMM would be charged
 * Python's ~10 MiB. Forking from this tiny static program keeps that under 1 MiB.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: spawn OUTFILE CMD [ARGS...]\n");
		return 127;
	}
	pid_t pid = fork();
	if (pid < 0)
		return 127;
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0)
		return 127;
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	FILE *f = fopen(argv[1], "w");
	if (f) {
		long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L +
			      ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
		fprintf(f, "exit=%d maxrss_kib=%ld cpu_us=%ld\n", code, ru.ru_maxrss, cpu_us);
		fclose(f);
	}
	return code;
}
