import Foundation
import ProcrefdClient

extension APIResponse {
    /// The body's JSON object as Foundation reads it (null as `NSNull`, so a test can tell
    /// a null member from a missing one); empty when it is not one.
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
}
