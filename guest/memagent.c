/*
 * memagent: the test guest's memory workload, run as init's child on the
 * serial console.  It reads one command per line and answers with one
 * line starting with "@@" so that the host can find it among kernel
 * messages:
 *
 *   fill N      write a pattern over N MiB, then free it (the kernel gets
 *               back pages whose old content migration would copy)
 *   keep M      allocate M MiB more and fill each page with content
 *               derived from its index and a seed (kept until exit)
 *   verify      check every kept page; report pages and mismatches
 *   churn M     start a child that keeps allocating up to M MiB in
 *               chunks, writing, verifying and freeing them
 *   churnstat   report the pages it has written and checked so far,
 *               without stopping it (its work rate, measured by the host)
 *   churnstop   stop it; report rounds, pages checked and mismatches
 *   free        report MemFree and MemAvailable in KiB
 *   placed A B  count the kept pages whose guest-physical address is in
 *               [A, B) (hex or decimal bytes; from /proc/self/pagemap)
 *   sh CMD      run CMD with /bin/sh; report its exit status and its
 *               output (first 3000 bytes) on one line, newlines as '|'
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1024UL * 1024UL)

struct region {
    uint64_t *mem;
    size_t pages;
    uint64_t seed;
};

static struct region kept[64];
static int nkept;
static pid_t churn_pid;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static void fill_page(uint64_t *p, uint64_t seed, size_t index)
{
    uint64_t x = mix(seed ^ (index * 0x9e3779b97f4a7c15ULL));
    size_t i;

    for (i = 0; i < PAGE / 8; i++) {
        p[i] = x + i;
    }
}

static int check_page(const uint64_t *p, uint64_t seed, size_t index)
{
    uint64_t x = mix(seed ^ (index * 0x9e3779b97f4a7c15ULL));
    size_t i;

    for (i = 0; i < PAGE / 8; i++) {
        if (p[i] != x + i) {
            return 0;
        }
    }
    return 1;
}

static void *map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void cmd_fill(unsigned long mib)
{
    size_t bytes = mib * MIB, i;
    uint64_t *p = map(bytes);

    if (!p) {
        printf("@@ERR fill: out of memory\n");
        return;
    }
    for (i = 0; i < bytes / 8; i += PAGE / 8) {
        fill_page(p + i, 0xdeadbeef, i);
    }
    munmap(p, bytes);
    printf("@@OK fill %lu\n", mib);
}

static void cmd_keep(unsigned long mib)
{
    struct region *r;
    size_t i;

    if (nkept == (int)(sizeof(kept) / sizeof(kept[0]))) {
        printf("@@ERR keep: too many regions\n");
        return;
    }
    r = &kept[nkept];
    r->pages = mib * MIB / PAGE;
    r->seed = mix((uint64_t)time(NULL) ^ (uint64_t)nkept);
    r->mem = map(r->pages * PAGE);
    if (!r->mem) {
        printf("@@ERR keep: out of memory\n");
        return;
    }
    for (i = 0; i < r->pages; i++) {
        fill_page(r->mem + i * (PAGE / 8), r->seed, i);
    }
    nkept++;
    printf("@@OK keep %lu\n", mib);
}

static void cmd_verify(void)
{
    unsigned long pages = 0, bad = 0;
    int r;
    size_t i;

    for (r = 0; r < nkept; r++) {
        for (i = 0; i < kept[r].pages; i++) {
            pages++;
            bad += !check_page(kept[r].mem + i * (PAGE / 8), kept[r].seed, i);
        }
    }
    printf("@@OK verify pages=%lu mismatches=%lu\n", pages, bad);
}

static volatile sig_atomic_t churn_stop;
/* Pages the churn child has written and checked, shared with the parent */
static unsigned long *churn_work;

static void on_term(int sig)
{
    (void)sig;
    churn_stop = 1;
}

/* The churn child: report through a pipe when told to stop. */
static void churn_loop(unsigned long mib, int fd)
{
    unsigned long rounds = 0, checked = 0, bad = 0;
    uint64_t seed = 1;
    char buf[128];
    int n;

    signal(SIGTERM, on_term);
    while (!churn_stop) {
        size_t pages = (1 + mix(seed) % mib) * MIB / PAGE, i;
        uint64_t *p = map(pages * PAGE);

        seed = mix(seed + 1);
        if (!p) {
            continue;
        }
        for (i = 0; i < pages; i++) {
            fill_page(p + i * (PAGE / 8), seed, i);
            __atomic_fetch_add(&churn_work[0], 1, __ATOMIC_RELAXED);
        }
        for (i = 0; i < pages; i++) {
            checked++;
            bad += !check_page(p + i * (PAGE / 8), seed, i);
            __atomic_fetch_add(&churn_work[1], 1, __ATOMIC_RELAXED);
        }
        munmap(p, pages * PAGE);
        rounds++;
    }
    n = snprintf(buf, sizeof(buf), "rounds=%lu pages=%lu mismatches=%lu",
                 rounds, checked, bad);
    if (write(fd, buf, n) != n) {
        _exit(1);
    }
    _exit(0);
}

static int churn_fd = -1;

static void cmd_churn(unsigned long mib)
{
    int fds[2];

    if (churn_pid || !mib || pipe(fds)) {
        printf("@@ERR churn: already running or bad size\n");
        return;
    }
    if (!churn_work) {
        churn_work = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (churn_work == MAP_FAILED) {
            churn_work = NULL;
            printf("@@ERR churn: no shared page for its counters\n");
            return;
        }
    }
    churn_work[0] = churn_work[1] = 0;
    churn_pid = fork();
    if (churn_pid == 0) {
        close(fds[0]);
        churn_loop(mib, fds[1]);
    }
    close(fds[1]);
    churn_fd = fds[0];
    printf("@@OK churn %lu\n", mib);
}

static void cmd_churnstop(void)
{
    char buf[128] = "";
    ssize_t n;

    if (!churn_pid) {
        printf("@@ERR churnstop: not running\n");
        return;
    }
    kill(churn_pid, SIGTERM);
    n = read(churn_fd, buf, sizeof(buf) - 1);
    waitpid(churn_pid, NULL, 0);
    close(churn_fd);
    churn_pid = 0;
    buf[n > 0 ? n : 0] = '\0';
    printf("@@OK churnstop %s\n", buf);
}

static void cmd_churnstat(void)
{
    if (!churn_pid) {
        printf("@@ERR churnstat: not running\n");
        return;
    }
    printf("@@OK churnstat written=%lu checked=%lu\n",
           __atomic_load_n(&churn_work[0], __ATOMIC_RELAXED),
           __atomic_load_n(&churn_work[1], __ATOMIC_RELAXED));
}

static void cmd_placed(uint64_t lo, uint64_t hi)
{
    unsigned long pages = 0, inside = 0, unknown = 0;
    int fd = open("/proc/self/pagemap", O_RDONLY), r;
    size_t i;

    if (fd < 0) {
        printf("@@ERR placed: cannot open /proc/self/pagemap\n");
        return;
    }
    for (r = 0; r < nkept; r++) {
        for (i = 0; i < kept[r].pages; i++) {
            uintptr_t va = (uintptr_t)(kept[r].mem + i * (PAGE / 8));
            uint64_t ent, pa;

            pages++;
            if (pread(fd, &ent, 8, va / PAGE * 8) != 8 ||
                !(ent & (1ULL << 63)) || !(ent & ((1ULL << 55) - 1))) {
                unknown++;
                continue;
            }
            pa = (ent & ((1ULL << 55) - 1)) * PAGE;
            inside += pa >= lo && pa < hi;
        }
    }
    close(fd);
    printf("@@OK placed pages=%lu inside=%lu unknown=%lu\n",
           pages, inside, unknown);
}

static void cmd_sh(const char *cmd)
{
    char out[3001], full[600];
    size_t n = 0, i;
    FILE *f;
    int st;

    snprintf(full, sizeof(full), "exec 2>&1 </dev/null; %s", cmd);
    f = popen(full, "r");
    if (!f) {
        printf("@@ERR sh: popen failed\n");
        return;
    }
    while (n < sizeof(out) - 1) {
        size_t got = fread(out + n, 1, sizeof(out) - 1 - n, f);
        if (!got) {
            break;
        }
        n += got;
    }
    while (fread(full, 1, sizeof(full), f)) {
        /* drain the rest */
    }
    st = pclose(f);
    out[n] = '\0';
    for (i = 0; i < n; i++) {
        if (out[i] == '\n' || out[i] == '\r') {
            out[i] = '|';
        }
    }
    printf("@@OK sh status=%d out=%s\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
}

static void print_file_line(const char *what, const char *path,
                            const char *key)
{
    char line[256];
    FILE *f = fopen(path, "r");

    while (f && fgets(line, sizeof(line), f)) {
        if (!key || !strncmp(line, key, strlen(key))) {
            line[strcspn(line, "\n")] = '\0';
            printf(" %s=%s", what, key ? line + strlen(key) : line);
            break;
        }
    }
    if (f) {
        fclose(f);
    }
}

int main(void)
{
    char line[256];
    unsigned long arg;

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("@@READY\n");
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (sscanf(line, "fill %lu", &arg) == 1) {
            cmd_fill(arg);
        } else if (sscanf(line, "keep %lu", &arg) == 1) {
            cmd_keep(arg);
        } else if (!strcmp(line, "verify")) {
            cmd_verify();
        } else if (sscanf(line, "churn %lu", &arg) == 1) {
            cmd_churn(arg);
        } else if (!strcmp(line, "churnstat")) {
            cmd_churnstat();
        } else if (!strcmp(line, "churnstop")) {
            cmd_churnstop();
        } else if (!strncmp(line, "sh ", 3)) {
            cmd_sh(line + 3);
        } else if (!strncmp(line, "placed ", 7)) {
            char *end;
            uint64_t lo = strtoull(line + 7, &end, 0);

            cmd_placed(lo, strtoull(end, NULL, 0));
        } else if (!strcmp(line, "free")) {
            printf("@@OK free");
            print_file_line("MemFree", "/proc/meminfo", "MemFree:");
            print_file_line("MemAvailable", "/proc/meminfo", "MemAvailable:");
            printf("\n");
        } else if (line[0]) {
            printf("@@ERR unknown command '%s'\n", line);
        }
    }
    return 0;
}
