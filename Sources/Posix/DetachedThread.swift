import CPosixShims
import Glibc
import SystemPackage

/// A thread of its own for a long-running loop (an event loop, a committer), detached:
/// it ends when its body returns. Foundation's `Thread`, without Foundation.
public enum DetachedThread {
    /// Starts `body` on a new thread named `name` (the kernel keeps 15 bytes: `top -H`).
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        final class Start: Sendable {
            let name: String
            let body: @Sendable () -> Void
            init(name: String, body: @escaping @Sendable () -> Void) {
                self.name = name
                self.body = body
            }
        }
        let start = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let code = pthread_create(&thread, nil, { argument in
            guard let argument else { return nil }
            let start = Unmanaged<Start>.fromOpaque(argument).takeRetainedValue()
            procref_set_thread_name(start.name)
            start.body()
            return nil
        }, start)
        guard code == 0 else {
            Unmanaged<Start>.fromOpaque(start).release()
            throw SystemCallError("pthread_create", errno: Errno(rawValue: code))
        }
        pthread_detach(thread)
    }
}
