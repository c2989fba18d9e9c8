/*
 * sqlite_floor: what SQLite alone charges per lease cycle on this machine.
 *
 * It makes procrefd's audit writes of a lease cycle without procrefd: the migrations in
 * migrations/ applied to a fresh file, the same pragmas (1 KiB pages, WAL, synchronous
 * NORMAL or FULL, checkpoints every 500 ms from the same process), and per cycle the
 * statements of the fast path, prepared once and bound with SQLite's C API:
 *
 *   acquire: INSERT INTO leases ..., INSERT INTO events ... ('lease.acquired')
 *   release: UPDATE leases SET ended_at ..., INSERT INTO events ... ('lease.released')
 *
 * Each of the two is one transaction (BEGIN IMMEDIATE ... COMMIT) holding BATCH of them,
 * as procrefd's group commit does under load (mean batch 1 at 1 client, 2.5 at 8, 7.5 at 32).
 * No HTTP, holders or Swift: with bench/floor.c (the kernel's share) it bounds from below
 * what any implementation of this design pays per cycle.
 *
 *   sqlite_floor MIGRATIONS_DIR normal|full BATCH SECONDS
 *
 * Prints one JSON object: cycles, cycles_per_s, commits, and CPU (utime+stime) per cycle.
 * Built and run by bench/run.py.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static void check(sqlite3 *db, int rc, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql) { check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql); }

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static void migrate(sqlite3 *db, const char *dir) {
    struct dirent **names;
    int count = scandir(dir, &names, NULL, by_name);
    if (count < 0) { perror(dir); exit(1); }
    for (int i = 0; i < count; i++) {
        size_t length = strlen(names[i]->d_name);
        if (length > 4 && strcmp(names[i]->d_name + length - 4, ".sql") == 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            FILE *file = fopen(path, "r");
            if (!file) { perror(path); exit(1); }
            static char sql[1 << 16];
            size_t got = fread(sql, 1, sizeof sql - 1, file);
            sql[got] = 0;
            fclose(file);
            exec(db, sql);
        }
        free(names[i]);
    }
    free(names);
}

static void step(sqlite3 *db, sqlite3_stmt *statement, const char *what) {
    check(db, sqlite3_step(statement), what);
    sqlite3_reset(statement);
}

static void event(sqlite3 *db, sqlite3_stmt *insert, const char *time, const char *kind, const char *lease, const char *detail) {
    sqlite3_bind_text(insert, 1, time, -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 3, "ready", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 4, lease, -1, SQLITE_STATIC);
    sqlite3_bind_int(insert, 5, 26489);
    sqlite3_bind_text(insert, 6, "tcp:127.0.0.1:38280", -1, SQLITE_STATIC);
    sqlite3_bind_text(insert, 7, detail, -1, SQLITE_STATIC);
    step(db, insert, "insert event");
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: sqlite_floor MIGRATIONS_DIR normal|full BATCH SECONDS\n");
        return 2;
    }
    const char *durability = strcmp(argv[2], "full") == 0 ? "FULL" : "NORMAL";
    int batch = atoi(argv[3]);
    double seconds = atof(argv[4]);
    if (batch < 1 || seconds <= 0) return 2;

    char dir[] = "/tmp/sqlite-floor-XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char path[64];
    snprintf(path, sizeof path, "%s/floor.db", dir);
    sqlite3 *db;
    check(NULL, sqlite3_open(path, &db), "open");
    exec(db, "PRAGMA page_size = 1024; PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0");
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA synchronous = %s", durability);
    exec(db, pragma);
    migrate(db, argv[1]);

    sqlite3_stmt *begin, *commit, *insert_lease, *end_lease, *insert_event;
    check(db, sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL), "prepare");
    check(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL), "prepare");
    check(db, sqlite3_prepare_v2(db,
        "INSERT INTO leases (id, service, holder, holder_pid, holder_start_time, client_pid, ttl_ms, acquired_at, expires_at) "
        "VALUES (?, 'ready', '', 26489, 3215359, NULL, 60000, ?, ?)", -1, &insert_lease, NULL), "prepare");
    check(db, sqlite3_prepare_v2(db,
        "UPDATE leases SET ended_at = ?, end_reason = 'released' WHERE id = ? AND ended_at IS NULL", -1, &end_lease, NULL), "prepare");
    check(db, sqlite3_prepare_v2(db,
        "INSERT INTO events (time, kind, service, lease, pid, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &insert_event, NULL),
        "prepare");

    const char *time = "2026-11-26T00:30:29.512Z";
    long cycles = 0, commits = 0, serial = 0;
    double started = now(), cpu_started = cpu_seconds(), last_checkpoint = started;
    char ids[64][32];
    if (batch > 64) batch = 64;
    while (now() - started < seconds) {
        step(db, begin, "begin");
        for (int i = 0; i < batch; i++) {
            snprintf(ids[i], sizeof ids[i], "l_%024lx", ++serial);
            sqlite3_bind_text(insert_lease, 1, ids[i], -1, SQLITE_STATIC);
            sqlite3_bind_text(insert_lease, 2, time, -1, SQLITE_STATIC);
            sqlite3_bind_text(insert_lease, 3, time, -1, SQLITE_STATIC);
            step(db, insert_lease, "insert lease");
            event(db, insert_event, time, "lease.acquired", ids[i], "{\"count\":2,\"started\":false,\"ttl_ms\":60000}");
        }
        step(db, commit, "commit");
        step(db, begin, "begin");
        for (int i = 0; i < batch; i++) {
            sqlite3_bind_text(end_lease, 1, time, -1, SQLITE_STATIC);
            sqlite3_bind_text(end_lease, 2, ids[i], -1, SQLITE_STATIC);
            step(db, end_lease, "end lease");
            event(db, insert_event, time, "lease.released", ids[i], "{\"count\":1,\"holder_exit\":null}");
        }
        step(db, commit, "commit");
        cycles += batch;
        commits += 2;
        if (now() - last_checkpoint >= 0.5) {
            exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
            last_checkpoint = now();
        }
    }
    double elapsed = now() - started, cpu = cpu_seconds() - cpu_started;
    printf("{\"cycles\": %ld, \"cycles_per_s\": %.1f, \"commits\": %ld, \"batch\": %d, \"cpu_us_per_cycle\": %.1f}\n",
        cycles, cycles / elapsed, commits, batch, cpu * 1e6 / cycles);

    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(insert_lease);
    sqlite3_finalize(end_lease);
    sqlite3_finalize(insert_event);
    sqlite3_close(db);
    char cleanup[128];
    snprintf(cleanup, sizeof cleanup, "%s/floor.db", dir);
    unlink(cleanup);
    snprintf(cleanup, sizeof cleanup, "%s/floor.db-wal", dir);
    unlink(cleanup);
    snprintf(cleanup, sizeof cleanup, "%s/floor.db-shm", dir);
    unlink(cleanup);
    rmdir(dir);
    return 0;
}
