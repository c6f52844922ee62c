/* handlers.c: test helper, linked into test_shmex: how many of the signals
 * the Go runtime handles (SIGSEGV, SIGBUS, SIGFPE, SIGPIPE, SIGURG) have a
 * handler that is not libshmex's, each printed. A Fortran program built
 * without -fno-backtrace has libgfortran's backtrace handler on the first
 * three. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int foreign_signal_handlers(void) {
    int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGPIPE, SIGURG};
    int n = 0;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        Dl_info info;
        if (sigaction(sigs[i], NULL, &sa) != 0) continue;
        const char *who = "no handler";
        if (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN && dladdr((void *)sa.sa_sigaction, &info) != 0)
            who = info.dli_fname;
        if (strstr(who, "libshmex") == NULL || !(sa.sa_flags & SA_ONSTACK)) {
            printf("signal %d: handler in %s, SA_ONSTACK %d\n", sigs[i], who, !!(sa.sa_flags & SA_ONSTACK));
            n++;
        }
    }
    return n;
}
