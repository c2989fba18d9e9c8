import FoundationEssentials
import Posix
import ProcrefdClient

extension APIClient {
    /// `POST /v1/services/SERVICE/leases`, queueing for a slot up to `waitMs` when every slot
    /// of the service is taken. The daemon holds one wait for at most its
    /// `acquire_timeout_ms`; a longer wait is made of several, each joining the queue anew.
    func acquire(service: String, body: [String: Any], waitMs: Int64) throws(ClientError) -> Response {
        let path = "/v1/services/\(service)/leases"
        guard waitMs > 0 else { return try call("POST", path, json: body) }
        let longest = Int64((try? call("GET", "/v1/daemon").object["acquire_timeout_ms"] as? Int) ?? 60_000)
        let deadline = monotonicMilliseconds() + waitMs
        while true {
            let round = max(1, min(deadline - monotonicMilliseconds(), longest))
            var body = body
            body["wait_ms"] = round
            do {
                // The answer may also wait for the service to start, up to the same limit.
                return try call("POST", path, json: body, timeoutMs: Int(round + longest) + 10_000)
            } catch {
                guard case .problem(let response) = error, response.isSlotsExhausted, monotonicMilliseconds() < deadline else { throw error }
            }
        }
    }
}

extension APIClient.Response {
    var isSlotsExhausted: Bool { status == 429 && (object["type"] as? String)?.hasSuffix(":slots-exhausted") == true }
}
