#define _GNU_SOURCE
#include "CPosixShims.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Spawning into a cgroup. posix_spawn cannot place the child in a cgroup before it runs,
 * and moving it afterwards races with a service that forks at once (a daemonizing one
 * escapes). A child that writes itself into cgroup.procs is a migration, which takes the
 * cgroup threadgroup lock for writing: an RCU grace period, 10-30 ms at times here.
 * clone3(CLONE_INTO_CGROUP) creates the child in the cgroup to begin with, with
 * CLONE_VFORK (the parent waits until it has exec'd). On x86_64 it also shares memory
 * (CLONE_VM) and runs on a stack of its own, as posix_spawn does inside glibc: no page
 * tables to copy (fork semantics cost ~0.5 ms more per start here). Elsewhere it runs with
 * fork semantics. Only async-signal-safe calls run in the child; every signal stays
 * blocked until its dispositions are reset. A step that fails before exec reports its
 * errno on a close-on-exec pipe.
 */

#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* struct clone_args of <linux/sched.h> (v2: with cgroup), spelt out to avoid its macros. */
struct procref_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void child_fail(int report_fd, int step, int error) {
    int report[2] = {step, error};
    (void)!write(report_fd, report, sizeof report);
    _exit(127);
}

static void run_child(const char *path, char *const argv[], char *const envp[], const procref_spawn_options *o,
                      int report_fd) {
    /* CLONE_CLEAR_SIGHAND resets handled signals only; ignored ones (procrefd ignores TERM,
     * INT, HUP and PIPE for its own reasons) must be default for the service too. */
    for (int signo = 1; signo < _NSIG; signo++) {
        if (signo == SIGKILL || signo == SIGSTOP) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigaction(signo, &action, NULL); /* glibc's reserved signals refuse: harmless */
    }
    if (o->new_session) {
        if (setsid() < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
    } else if (o->new_process_group) {
        if (setpgid(0, 0) < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
    }
    int std_fds[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int target = 0; target < 3; target++) {
        int fd = std_fds[target];
        if (fd < 0) fd = open("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
        if (fd < 0 || (fd != target && dup2(fd, target) < 0)) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
    }
    /* Joins the v1 hierarchies (memory, pids, cpu caps) as root, before anything runs. */
    for (int i = 0; i < o->join_count; i++) {
        if (write(o->join_fds[i], "0", 1) != 1) child_fail(report_fd, PROCREF_STEP_CGROUP, errno);
    }
    for (int i = 0; i < o->rlimit_count; i++) {
        struct rlimit limit = {o->rlimits[i].soft, o->rlimits[i].hard};
        if (setrlimit(o->rlimits[i].resource, &limit) < 0) child_fail(report_fd, PROCREF_STEP_RLIMIT, errno);
    }
    if (o->umask_value >= 0) umask((mode_t)o->umask_value);
    /* setgroups, then setgid, then setuid: each needs the privileges the next one drops.
     * Raw system calls: glibc's wrappers would apply them to every thread of the process
     * (its setxid broadcast), and this child shares the parent's memory and thread list. */
    if (o->group_count >= 0 && syscall(SYS_setgroups, (size_t)o->group_count, (const gid_t *)o->groups) < 0)
        child_fail(report_fd, PROCREF_STEP_SETGROUPS, errno);
    if (o->gid >= 0 && syscall(SYS_setresgid, (gid_t)o->gid, (gid_t)o->gid, (gid_t)o->gid) < 0)
        child_fail(report_fd, PROCREF_STEP_SETGID, errno);
    if (o->uid >= 0 && syscall(SYS_setresuid, (uid_t)o->uid, (uid_t)o->uid, (uid_t)o->uid) < 0)
        child_fail(report_fd, PROCREF_STEP_SETUID, errno);
    /* A drop that silently did not happen must abort the start. */
    if (o->gid >= 0 && (getgid() != (gid_t)o->gid || getegid() != (gid_t)o->gid))
        child_fail(report_fd, PROCREF_STEP_PRIVILEGES_KEPT, EPERM);
    if (o->uid >= 0 && (getuid() != (uid_t)o->uid || geteuid() != (uid_t)o->uid))
        child_fail(report_fd, PROCREF_STEP_PRIVILEGES_KEPT, EPERM);
    if (o->uid > 0 && syscall(SYS_setresuid, 0, 0, 0) == 0) child_fail(report_fd, PROCREF_STEP_PRIVILEGES_KEPT, EPERM);
    /* As the service's user: a cwd it cannot enter is its error, not a mystery exit. */
    if (o->cwd != NULL && chdir(o->cwd) < 0) child_fail(report_fd, PROCREF_STEP_CWD, errno);
    /* Socket activation, once every other descriptor of the parent's has been used: the
     * report pipe and the sockets first move above the range they will occupy, so no dup2
     * lands on a descriptor still to be moved. */
    int first_kept = 3 + (o->listen_count > 0 ? o->listen_count : 0);
    if (o->listen_count > 0) {
        if (o->listen_count > PROCREF_MAX_LISTEN_FDS) child_fail(report_fd, PROCREF_STEP_SETUP, EINVAL);
        int moved = fcntl(report_fd, F_DUPFD_CLOEXEC, first_kept);
        if (moved < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
        report_fd = moved;
        int high[PROCREF_MAX_LISTEN_FDS];
        for (int i = 0; i < o->listen_count; i++) {
            high[i] = fcntl(o->listen_fds[i], F_DUPFD_CLOEXEC, first_kept);
            if (high[i] < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
        }
        for (int i = 0; i < o->listen_count; i++) {
            if (dup2(high[i], 3 + i) < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
        }
        if (o->listen_pid_entry != NULL) {
            char digits[24];
            int n = 0;
            long pid = syscall(SYS_getpid); /* glibc's getpid may answer for the parent here */
            do { digits[n++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0 && n < 20);
            char *value = o->listen_pid_entry + strlen("LISTEN_PID=");
            for (int i = 0; i < n; i++) value[i] = digits[n - 1 - i];
            value[n] = '\0';
        }
    }
    /* Keep only 0-2, the activation sockets and the report pipe (close-on-exec) open. */
    if (report_fd > first_kept && syscall(SYS_close_range, (unsigned)first_kept, (unsigned)report_fd - 1, 0U) < 0)
        child_fail(report_fd, PROCREF_STEP_SETUP, errno);
    if (syscall(SYS_close_range, (unsigned)report_fd + 1, ~0U, 0U) < 0) child_fail(report_fd, PROCREF_STEP_SETUP, errno);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(path, argv, envp);
    child_fail(report_fd, PROCREF_STEP_EXEC, errno);
}

struct child_start {
    const char *path;
    char *const *argv;
    char *const *envp;
    const procref_spawn_options *options;
    int report_fd;
};

static int child_entry(void *arg) {
    struct child_start *start = arg;
    run_child(start->path, start->argv, start->envp, start->options, start->report_fd);
    return 127;
}

#if defined(__x86_64__)
/*
 * clone3 with CLONE_VM: the child resumes after the syscall on its own stack (rsp = stack +
 * stack_size), so it must not return into this C frame. It calls `entry(arg)`, kept in
 * callee-saved registers, and exits; glibc's clone3 does the same.
 */
static long clone3_on_stack(struct procref_clone_args *args, int (*entry)(void *), void *arg) {
    long result;
    register int (*entry_register)(void *) __asm__("r12") = entry;
    register void *arg_register __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "and $-16, %%rsp\n\t"
        "mov %%r13, %%rdi\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t" /* SYS_exit */
        "syscall\n\t"
        "hlt\n\t"
        "1:\n\t"
        : "=a"(result)
        : "0"((long)SYS_clone3), "D"(args), "S"(sizeof *args), "r"(entry_register), "r"(arg_register)
        : "rcx", "r11", "memory");
    return result;
}
#endif

pid_t procref_spawn_in_cgroup(const char *path, char *const argv[], char *const envp[],
                              const procref_spawn_options *options) {
    if (options->pass_fd >= 0) { errno = EINVAL; return -1; }
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) return -1;
    struct procref_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_VFORK | CLONE_CLEAR_SIGHAND;
    if (options->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)options->cgroup_fd;
    }
    args.exit_signal = SIGCHLD;
    struct child_start start = {path, argv, envp, options, report[1]};
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous); /* the child unblocks once handlers are reset */
#if defined(__x86_64__)
    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    long pid = -1;
    if (stack != MAP_FAILED) {
        args.flags |= CLONE_VM;
        args.stack = (uint64_t)(uintptr_t)stack;
        args.stack_size = stack_size;
        pid = clone3_on_stack(&args, child_entry, &start);
        if (pid < 0) { errno = (int)-pid; pid = -1; } /* the raw syscall returns -errno */
    }
    int saved = errno;
    if (stack != MAP_FAILED) munmap(stack, stack_size); /* the child has exec'd or exited: CLONE_VFORK */
#else
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) child_entry(&start);
    int saved = errno;
#endif
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(report[1]);
    if (pid < 0) {
        close(report[0]);
        errno = saved;
        return -1;
    }
    int failure[2] = {0, 0};
    ssize_t n;
    do { n = read(report[0], failure, sizeof failure); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof failure) {
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
        if (options->failed_step != NULL) *options->failed_step = failure[0];
        errno = failure[1];
        return -1;
    }
    return (pid_t)pid;
}
