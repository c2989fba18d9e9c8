import Lifecycle
import MicroHTTPD
import Posix

/// Runs `operation` in a task that is cancelled if the request's client hangs up first: a
/// lifecycle wait (a queued acquire) then ends instead of holding a place for nobody.
func untilHangup<T: Sendable>(
    of request: HTTPRequest, on loop: IOLoop?, _ operation: @escaping @Sendable () async throws(LifecycleError) -> T
) async throws(LifecycleError) -> T {
    let task = Task { () async -> Result<T, LifecycleError> in
        do throws(LifecycleError) { return .success(try await operation()) } catch { return .failure(error) }
    }
    let watch = loop.flatMap { loop in
        request.connectionFD < 0 ? nil : HangupWatch(socket: request.connectionFD, loop: loop) { task.cancel() }
    }
    let result = await task.value
    watch?.cancel()
    return try result.get()
}
