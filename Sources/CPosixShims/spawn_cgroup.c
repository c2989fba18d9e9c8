#define _GNU_SOURCE
#include "CPosixShims.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Spawning into a cgroup. posix_spawn cannot place the child in a cgroup before it runs,
 * and moving it afterwards races with a service that forks at once (a daemonizing one
 * escapes). So this does what posix_spawn does inside glibc, a vfork-style clone that
 * shares memory on a stack of its own, and the child writes itself into cgroup.procs
 * before exec. Only async-signal-safe calls run in the child; every signal stays blocked
 * until its handlers are reset, so no handler of the parent runs on the shared memory.
 */

struct cgroup_child {
    const char *path;
    char *const *argv;
    char *const *envp;
    const procref_spawn_options *options;
    volatile int error;  /* set by the child when a step before exec fails */
};

static void child_fail(struct cgroup_child *child, int error) {
    child->error = error;
    _exit(127);
}

static int cgroup_child_main(void *arg) {
    struct cgroup_child *child = arg;
    const procref_spawn_options *o = child->options;
    for (int signo = 1; signo < _NSIG; signo++) {
        if (signo == SIGKILL || signo == SIGSTOP) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        sigaction(signo, &action, NULL); /* glibc's reserved signals refuse: harmless */
    }
    if (write(o->cgroup_procs_fd, "0", 1) != 1) child_fail(child, errno);
    if (o->new_session) {
        if (setsid() < 0) child_fail(child, errno);
    } else if (o->new_process_group) {
        if (setpgid(0, 0) < 0) child_fail(child, errno);
    }
    int std_fds[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int target = 0; target < 3; target++) {
        int fd = std_fds[target];
        if (fd < 0) fd = open("/dev/null", target == 0 ? O_RDONLY : O_WRONLY);
        if (fd < 0 || (fd != target && dup2(fd, target) < 0)) child_fail(child, errno);
    }
    if (o->cwd != NULL && chdir(o->cwd) < 0) child_fail(child, errno);
    if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0) child_fail(child, errno);
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(child->path, child->argv, child->envp);
    child_fail(child, errno);
    return 127;
}

pid_t procref_spawn_in_cgroup(const char *path, char *const argv[], char *const envp[],
                              const procref_spawn_options *options) {
    if (options->pass_fd >= 0) { errno = EINVAL; return -1; }
    const size_t stack_size = 64 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    struct cgroup_child child = {.path = path, .argv = argv, .envp = envp, .options = options, .error = 0};
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &previous);
    pid_t pid = clone(cgroup_child_main, (char *)stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &child);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    munmap(stack, stack_size);
    if (pid < 0) { errno = saved; return -1; }
    if (child.error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = child.error;
        return -1;
    }
    return pid;
}
