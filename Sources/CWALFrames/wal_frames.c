/*
 * A SQLite VFS shim that writes a WAL commit with one call.
 *
 * SQLite appends each WAL frame with two writes (the 24-byte frame header, then the page
 * after it), and a commit of one lease change appends about thirteen frames: 26 pwrite
 * calls, each a few µs of kernel time here. The shim gathers the WAL writes of a commit,
 * which are contiguous, in a buffer and writes them with one call.
 *
 * When the buffer is written: with the page of the commit frame (a frame header whose
 * bytes 4-7, the database size after the commit, are not 0), so a failed write is reported
 * on that very call and SQLite abandons the commit before it publishes anything; and before
 * the shim forwards any other call on any file from the same thread (a read, a sync, a size,
 * a lock, a write elsewhere, the shared-memory barrier SQLite passes before it publishes new
 * frames), when the file closes, and when it would pass 64 KiB. SQLite calls its VFS on the
 * thread that runs the statement, so the buffer is per thread. Readers never see a frame
 * that is not in the file, and a commit is in the file (the page cache) before the
 * committing call returns, as without the shim. Every other file and write passes through.
 */
#include "wal_frames.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* SQLite's unix VFS writes at most 0x1ffff bytes per call: its seekAndWrite masks the
   length with it, so a longer buffer would be cut and the commit reported as SQLITE_FULL.
   A lease commit appends 10-30 KiB; a larger transaction is written in 64 KiB calls. */
#define BUFFER_LIMIT (64 * 1024)
#define FRAME_HEADER 24

typedef struct ShimFile {
    sqlite3_file base;
    sqlite3_file *real;
    int wal;
    /* WAL writes not yet passed on: `length` bytes for offset `start`. */
    unsigned char *buffer;
    int length;
    int capacity;
    sqlite3_int64 start;
    /* The last write was a commit frame's header: its page ends the commit. */
    int commitPageNext;
} ShimFile;

static sqlite3_vfs shim;
static sqlite3_vfs *inner;
static sqlite3_io_methods methods;
static atomic_llong combined;
/* The file whose buffer this thread has not written yet. */
static __thread ShimFile *pending;

#define REAL(f) (((ShimFile *)(f))->real)

static int flushFile(ShimFile *p) {
    if (pending == p) pending = NULL;
    if (p->length == 0) return SQLITE_OK;
    int length = p->length;
    p->length = 0;
    return p->real->pMethods->xWrite(p->real, p->buffer, length, p->start);
}

/* Writes this thread's buffered WAL bytes, whatever file the next call is on. */
static int flushPending(void) {
    return pending == NULL ? SQLITE_OK : flushFile(pending);
}

static int shimClose(sqlite3_file *f) {
    ShimFile *p = (ShimFile *)f;
    int rc = flushFile(p);
    int closed = p->real->pMethods->xClose(p->real);
    free(p->buffer);
    p->buffer = NULL;
    return rc != SQLITE_OK ? rc : closed;
}

static int shimRead(sqlite3_file *f, void *buf, int amt, sqlite3_int64 offset) {
    int rc = flushPending();
    return rc != SQLITE_OK ? rc : REAL(f)->pMethods->xRead(REAL(f), buf, amt, offset);
}

static int shimWrite(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 offset) {
    ShimFile *p = (ShimFile *)f;
    int appends = p->wal && pending == p && offset == p->start + p->length && p->length + amt <= BUFFER_LIMIT;
    if (!appends) {
        int rc = flushPending();
        if (rc != SQLITE_OK) return rc;
        if (!p->wal || amt > BUFFER_LIMIT) return p->real->pMethods->xWrite(p->real, buf, amt, offset);
        p->start = offset;
    } else {
        atomic_fetch_add_explicit(&combined, 1, memory_order_relaxed);
    }
    if (p->length + amt > p->capacity) {
        int capacity = p->capacity == 0 ? 64 * 1024 : p->capacity;
        while (capacity < p->length + amt) capacity *= 2;
        unsigned char *grown = realloc(p->buffer, (size_t)capacity);
        if (grown == NULL) {
            int rc = flushFile(p);
            return rc != SQLITE_OK ? rc : p->real->pMethods->xWrite(p->real, buf, amt, offset);
        }
        p->buffer = grown;
        p->capacity = capacity;
    }
    memcpy(p->buffer + p->length, buf, (size_t)amt);
    p->length += amt;
    pending = p;
    if (p->commitPageNext) {
        /* The commit frame is whole: the commit goes to the file now, and a failure is
           SQLite's to see on this very write, before it publishes anything. */
        p->commitPageNext = 0;
        return flushFile(p);
    }
    /* A frame header's bytes 4-7 hold the database size after a commit, 0 in other frames. */
    const unsigned char *bytes = buf;
    p->commitPageNext = amt == FRAME_HEADER && (bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0;
    return SQLITE_OK;
}

/* Every other call writes this thread's buffered WAL bytes first, then passes through. */
#define FLUSHED() do { int rc_ = flushPending(); if (rc_ != SQLITE_OK) return rc_; } while (0)

static int shimTruncate(sqlite3_file *f, sqlite3_int64 size) { FLUSHED(); return REAL(f)->pMethods->xTruncate(REAL(f), size); }
static int shimSync(sqlite3_file *f, int flags) { FLUSHED(); return REAL(f)->pMethods->xSync(REAL(f), flags); }
static int shimFileSize(sqlite3_file *f, sqlite3_int64 *size) { FLUSHED(); return REAL(f)->pMethods->xFileSize(REAL(f), size); }
static int shimLock(sqlite3_file *f, int level) { FLUSHED(); return REAL(f)->pMethods->xLock(REAL(f), level); }
static int shimUnlock(sqlite3_file *f, int level) { FLUSHED(); return REAL(f)->pMethods->xUnlock(REAL(f), level); }
static int shimCheckReservedLock(sqlite3_file *f, int *out) { FLUSHED(); return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out); }
static int shimFileControl(sqlite3_file *f, int op, void *arg) { FLUSHED(); return REAL(f)->pMethods->xFileControl(REAL(f), op, arg); }
static int shimSectorSize(sqlite3_file *f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
static int shimDeviceCharacteristics(sqlite3_file *f) { return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f)); }
static int shimShmMap(sqlite3_file *f, int region, int size, int extend, void volatile **out) {
    FLUSHED();
    return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}
static int shimShmLock(sqlite3_file *f, int offset, int n, int flags) { FLUSHED(); return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags); }
/* SQLite passes this barrier before it publishes new frames in the WAL index. A commit
   reaches it already written (with its commit frame); this catches anything else. */
static void shimShmBarrier(sqlite3_file *f) { flushPending(); REAL(f)->pMethods->xShmBarrier(REAL(f)); }
static int shimShmUnmap(sqlite3_file *f, int deleteFlag) { FLUSHED(); return REAL(f)->pMethods->xShmUnmap(REAL(f), deleteFlag); }
static int shimFetch(sqlite3_file *f, sqlite3_int64 offset, int amt, void **out) { FLUSHED(); return REAL(f)->pMethods->xFetch(REAL(f), offset, amt, out); }
static int shimUnfetch(sqlite3_file *f, sqlite3_int64 offset, void *page) { FLUSHED(); return REAL(f)->pMethods->xUnfetch(REAL(f), offset, page); }

static int shimOpen(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    ShimFile *p = (ShimFile *)file;
    memset(p, 0, sizeof *p);
    p->real = (sqlite3_file *)&p[1];
    p->wal = (flags & SQLITE_OPEN_WAL) != 0;
    int rc = inner->xOpen(inner, name, p->real, flags, outFlags);
    /* Only a file the inner VFS opened (and gave methods) is wrapped; SQLite calls nothing
       on a file whose methods are NULL. The shim needs version 3 methods underneath. */
    if (p->real->pMethods == NULL || p->real->pMethods->iVersion < 3) {
        p->base.pMethods = NULL;
        if (p->real->pMethods != NULL) p->real->pMethods->xClose(p->real);
        return rc == SQLITE_OK ? SQLITE_CANTOPEN : rc;
    }
    p->base.pMethods = &methods;
    return rc;
}

/* The rest of the VFS is the inner one's. */
static int shimDelete(sqlite3_vfs *v, const char *name, int sync) { (void)v; return inner->xDelete(inner, name, sync); }
static int shimAccess(sqlite3_vfs *v, const char *name, int flags, int *out) { (void)v; return inner->xAccess(inner, name, flags, out); }
static int shimFullPathname(sqlite3_vfs *v, const char *name, int size, char *out) { (void)v; return inner->xFullPathname(inner, name, size, out); }
static void *shimDlOpen(sqlite3_vfs *v, const char *name) { (void)v; return inner->xDlOpen(inner, name); }
static void shimDlError(sqlite3_vfs *v, int size, char *out) { (void)v; inner->xDlError(inner, size, out); }
static void (*shimDlSym(sqlite3_vfs *v, void *handle, const char *symbol))(void) { (void)v; return inner->xDlSym(inner, handle, symbol); }
static void shimDlClose(sqlite3_vfs *v, void *handle) { (void)v; inner->xDlClose(inner, handle); }
static int shimRandomness(sqlite3_vfs *v, int size, char *out) { (void)v; return inner->xRandomness(inner, size, out); }
static int shimSleep(sqlite3_vfs *v, int microseconds) { (void)v; return inner->xSleep(inner, microseconds); }
static int shimCurrentTime(sqlite3_vfs *v, double *out) { (void)v; return inner->xCurrentTime(inner, out); }
static int shimGetLastError(sqlite3_vfs *v, int size, char *out) { (void)v; return inner->xGetLastError(inner, size, out); }
static int shimCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *out) { (void)v; return inner->xCurrentTimeInt64(inner, out); }
static int shimSetSystemCall(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr call) { (void)v; return inner->xSetSystemCall(inner, name, call); }
static sqlite3_syscall_ptr shimGetSystemCall(sqlite3_vfs *v, const char *name) { (void)v; return inner->xGetSystemCall(inner, name); }
static const char *shimNextSystemCall(sqlite3_vfs *v, const char *name) { (void)v; return inner->xNextSystemCall(inner, name); }

static int registered = SQLITE_ERROR;

static void registerOnce(void) {
    inner = sqlite3_vfs_find(NULL);
    if (inner == NULL || inner->iVersion < 3) return;
    methods = (sqlite3_io_methods){
        .iVersion = 3, .xClose = shimClose, .xRead = shimRead, .xWrite = shimWrite, .xTruncate = shimTruncate,
        .xSync = shimSync, .xFileSize = shimFileSize, .xLock = shimLock, .xUnlock = shimUnlock,
        .xCheckReservedLock = shimCheckReservedLock, .xFileControl = shimFileControl, .xSectorSize = shimSectorSize,
        .xDeviceCharacteristics = shimDeviceCharacteristics, .xShmMap = shimShmMap, .xShmLock = shimShmLock,
        .xShmBarrier = shimShmBarrier, .xShmUnmap = shimShmUnmap, .xFetch = shimFetch, .xUnfetch = shimUnfetch,
    };
    shim = (sqlite3_vfs){
        .iVersion = 3, .szOsFile = (int)sizeof(ShimFile) + inner->szOsFile, .mxPathname = inner->mxPathname,
        .zName = "procref-wal-frames", .xOpen = shimOpen, .xDelete = shimDelete, .xAccess = shimAccess,
        .xFullPathname = shimFullPathname, .xDlOpen = shimDlOpen, .xDlError = shimDlError, .xDlSym = shimDlSym,
        .xDlClose = shimDlClose, .xRandomness = shimRandomness, .xSleep = shimSleep, .xCurrentTime = shimCurrentTime,
        .xGetLastError = shimGetLastError, .xCurrentTimeInt64 = shimCurrentTimeInt64,
        .xSetSystemCall = shimSetSystemCall, .xGetSystemCall = shimGetSystemCall, .xNextSystemCall = shimNextSystemCall,
    };
    registered = sqlite3_vfs_register(&shim, 1);
}

int procref_wal_frames_register(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, registerOnce);
    return registered;
}

long long procref_wal_frames_combined(void) { return atomic_load_explicit(&combined, memory_order_relaxed); }
