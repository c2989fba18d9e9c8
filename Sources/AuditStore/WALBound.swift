import CSQLite
import SQLite
import Synchronization

/// Keeps the WAL from growing without bound under a steady stream of commits.
///
/// The background checkpointer copies the WAL into the database without blocking writers
/// (PASSIVE), but SQLite rewinds the WAL only when a write transaction begins while every
/// frame has been copied, and under steady writes there is always a commit newer than the
/// copy: 30,000 lease cycles in a row left 787 MB of WAL, each commit appending to new
/// file pages. So once the WAL holds `limitFrames` frames, the checkpointer, right after a
/// pass, asks the writer to finish it: before its next batch the writer checkpoints what
/// was committed during that pass (no writer can add to it meanwhile) and the batch's
/// BEGIN rewinds the WAL. The writer pays only the syncs of that remainder, once per bound
/// crossed; a whole inline checkpoint (the syncs of everything since the last pass) cost
/// 3-30 ms here, a finish 3-6 ms. Should no checkpointer run (or keep up), the writer
/// checkpoints whole at four times the bound.
final class WALBound: Sendable {
    let limitFrames: Int32
    private struct State {
        /// Frames in the WAL after the last commit (SQLite's WAL hook says).
        var frames: Int32 = 0
        /// The checkpointer finished a pass with the WAL over its bound.
        var finishRequested = false
        /// The checkpointer is in a pass: a checkpoint of the writer's would only find it busy.
        var passing = false
        /// Without a request, the writer checkpoints at this size.
        var fallbackAt: Int32
    }
    private let state: Mutex<State>

    /// Checkpoints the writer made (for tests and benchmarks).
    let checkpoints = Atomic<Int>(0)

    init(limitFrames: Int32) {
        self.limitFrames = limitFrames
        state = Mutex(State(fallbackAt: 4 * limitFrames))
    }

    /// Follows the WAL's size on the writer's connection (set after `wal_autocheckpoint = 0`,
    /// which would replace the hook). The bound must outlive the connection.
    func watch(_ db: Database) {
        let connection = db.sqliteConnection
        let context = Unmanaged.passUnretained(self).toOpaque()
        sqlite3_wal_hook(connection, { context, _, _, frames in
            guard let context else { return SQLITE_OK }
            Unmanaged<WALBound>.fromOpaque(context).takeUnretainedValue().committed(frames: frames)
            return SQLITE_OK
        }, context)
    }

    private func committed(frames: Int32) {
        state.withLock { state in
            // Fewer frames than before: the WAL was rewound.
            if frames < state.frames { state.fallbackAt = 4 * limitFrames }
            state.frames = frames
        }
    }

    /// The WAL is over its bound: the checkpointer then passes again soon, and asks the
    /// writer to finish (`passEnded`).
    var isOverLimit: Bool { state.withLock { $0.frames >= limitFrames } }

    /// From the checkpointer around each pass; after one with the WAL over its bound, the
    /// writer is asked to finish it.
    func passBegins() { state.withLock { $0.passing = true } }
    func passEnded(overLimit: Bool) {
        state.withLock { state in
            state.passing = false
            if overLimit { state.finishRequested = true }
        }
    }

    /// Before a batch, on the writer's connection outside a transaction: checkpoints what
    /// the last pass left when asked to (or at the fallback size). Should readers still use
    /// old frames, the WAL is not rewound, and the next pass asks again.
    func finishIfDue(_ db: Database) {
        let due = state.withLock { state -> Bool in
            // During a pass the writer's checkpoint would only find it busy; the pass's end
            // asks again.
            guard !state.passing, state.finishRequested || state.frames >= state.fallbackAt else { return false }
            state.finishRequested = false
            state.fallbackAt = state.frames + 4 * limitFrames
            return true
        }
        guard due else { return }
        _ = try? db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)")
        checkpoints.add(1, ordering: .relaxed)
    }
}
