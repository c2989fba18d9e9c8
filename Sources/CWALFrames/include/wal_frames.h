#ifndef PROCREF_WAL_FRAMES_H
#define PROCREF_WAL_FRAMES_H

/**
 * Registers, once and as SQLite's default, a VFS that wraps the default one and writes the
 * WAL frames of a commit with one write instead of two per frame. Returns SQLite's result
 * code (0: registered, or already).
 */
int procref_wal_frames_register(void);

/** WAL writes so far that joined the one before them (for tests). */
long long procref_wal_frames_combined(void);

#endif
