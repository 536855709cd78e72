/* A wall clock of its own for one process, for the chaos run's `pi_clock_jump`
 * (tools/faults.py WallClock): the hall's Pi has no real-time clock, so after a
 * power cut it boots on the time it last saved and NTP jumps it later, or a
 * technician sets it by hand. Setting this machine's clock would move every other
 * process on it; this moves one process's.
 *
 * Loaded with LD_PRELOAD. The offset (milliseconds, a little-endian int64) is
 * read from the file named by QL_WALLCLOCK_FILE, mapped once and read on every
 * call, so another process moves this one's clock by writing the file.
 * Only the wall clock moves (CLOCK_REALTIME, gettimeofday, time): the monotonic
 * clocks, and with them every sleep and timeout in the process, are untouched,
 * as on a real machine whose clock is set. (libfaketime also fakes sleeps, which
 * made CPython's clock_nanosleep fail with EINVAL.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile const int64_t *offset_ms;

__attribute__((constructor)) static void wallclock_init(void)
{
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("QL_WALLCLOCK_FILE");
    if (path == NULL)
        return;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    void *p = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        offset_ms = p;
}

static void shift(struct timespec *ts)
{
    int64_t off = offset_ms ? *offset_ms : 0;
    int64_t ns = (int64_t)ts->tv_nsec + (off % 1000) * 1000000;
    ts->tv_sec += off / 1000 + ns / 1000000000;
    ns %= 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        ts->tv_sec -= 1;
    }
    ts->tv_nsec = ns;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int r = real_clock_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;
    (void)tz;      /* obsolete; glibc declares tv non-null */
    if (real_clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    shift(&ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out)
{
    struct timespec ts;
    real_clock_gettime(CLOCK_REALTIME, &ts);
    shift(&ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
