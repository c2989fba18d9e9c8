import CMicroHTTPD
import FoundationEssentials
import Glibc
import Synchronization

// The C side of the server: MHD calls these on its own threads. They live outside
// any main.swift and capture nothing (see ../shared/PITFALLS.md: a C callback in main.swift
// is inferred MainActor and traps on MHD's thread; a capturing closure cannot be a C pointer).

/// State of one request across MHD's calls, stored in `*req_cls`. MHD calls for one
/// connection never overlap, and resume happens after the response is stored, so plain
/// fields are safe here.
final class RequestState: @unchecked Sendable {
    enum Phase {
        case receiving
        case waiting
        case answered(HTTPResponse)
    }

    var phase: Phase = .receiving
    var body: [UInt8] = []
}

/// An MHD connection handle, passed to the task that resumes it.
struct ConnectionPointer: @unchecked Sendable {
    let pointer: OpaquePointer
}

let mhdAccessHandler: MHD_AccessHandlerCallback = { cls, connection, url, method, _, uploadData, uploadSize, requestCls in
    guard let cls, let connection, let url, let method, let uploadSize, let requestCls else { return MHD_Result.NO }
    let server = Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue()

    // First call: headers only. Store state and answer later (keeps keep-alive).
    guard let raw = requestCls.pointee else {
        requestCls.pointee = Unmanaged.passRetained(RequestState()).toOpaque()
        server.inFlight.add(1, ordering: .relaxed)
        // A body announced too large is refused before a byte of it is read; answering on
        // the first call also makes MHD close the connection instead of reading the rest.
        if let length = MHD_lookup_connection_value(connection, .HEADER_KIND, "Content-Length"),
            let announced = Int(String(cString: length)), announced > server.maxBodyBytes
        {
            return queue(tooLarge(server), on: connection, server: server)
        }
        return MHD_Result.YES
    }
    let state = Unmanaged<RequestState>.fromOpaque(raw).takeUnretainedValue()

    switch state.phase {
    case .receiving:
        if uploadSize.pointee > 0 {
            // The data pointer is valid only during this call: copy, then mark consumed.
            let size = uploadSize.pointee
            if state.body.count + size > server.maxBodyBytes {
                // A chunked body past the bound: the connection is dropped, not drained.
                return MHD_Result.NO
            } else if let uploadData {
                uploadData.withMemoryRebound(to: UInt8.self, capacity: size) {
                    state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: size))
                }
            }
            uploadSize.pointee = 0
            return MHD_Result.YES
        }
        let request = makeRequest(
            connection: connection, url: String(cString: url), method: String(cString: method),
            body: state.body, transport: server.transport)
        state.body = []
        let answer = server.responder.firstAnswer(to: request)
        if case .now(let response) = answer { return queue(response, on: connection, server: server) }
        // Suspended before the answer can arrive (it may come at once, from another thread);
        // resumed once it is stored, so the next call here finds it.
        state.phase = .waiting
        MHD_suspend_connection(connection)
        let handle = ConnectionPointer(pointer: connection)
        let deliver = { @Sendable (response: HTTPResponse) in
            state.phase = .answered(response)
            MHD_resume_connection(handle.pointer)
        }
        switch answer {
        case .now: break
        case .later(let work): Task { deliver(await work()) }
        case .whenReady(let register): register(deliver)
        }
        return MHD_Result.YES
    case .waiting:
        return MHD_Result.YES
    case .answered(let response):
        return queue(response, on: connection, server: server)
    }
}

/// A connection opens or closes: on the Unix socket, its peer's credentials are read from
/// the kernel once and kept in the connection's socket context for all its requests.
let mhdConnectionHandler: MHD_NotifyConnectionCallback = { _, connection, socketContext, code in
    guard let socketContext else { return }
    if code.rawValue == 0 {  // MHD_CONNECTION_NOTIFY_STARTED
        guard let connection else { return }
        let fd = procref_mhd_connection_fd(connection)
        var uid: UInt32 = 0, gid: UInt32 = 0, pid: Int32 = 0
        guard fd >= 0, procref_peer_credentials(fd, &uid, &gid, &pid) == 0 else { return }
        let comm = pid > 0 ? peerComm(pid) : nil
        let box = PeerBox(PeerCredentials(uid: uid, gid: gid, pid: pid, comm: comm))
        socketContext.pointee = Unmanaged.passRetained(box).toOpaque()
    } else if code.rawValue == 1 {  // MHD_CONNECTION_NOTIFY_CLOSED
        if let raw = socketContext.pointee { Unmanaged<PeerBox>.fromOpaque(raw).release() }
        socketContext.pointee = nil
    }
}

/// A peer's credentials, kept for the life of its connection.
final class PeerBox: Sendable {
    let peer: PeerCredentials
    init(_ peer: PeerCredentials) { self.peer = peer }
}

/// `/proc/PID/comm`, without its newline.
private func peerComm(_ pid: Int32) -> String? {
    let fd = open("/proc/\(pid)/comm", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 32)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0 else { return nil }
    return String(decoding: buffer[0..<n].prefix { $0 != 10 }, as: UTF8.self)
}

/// Called once a response is sent (or the connection dropped): the request is over.
let mhdCompletedHandler: MHD_RequestCompletedCallback = { cls, _, requestCls, _ in
    guard let cls, let requestCls, let raw = requestCls.pointee else { return }
    Unmanaged<RequestState>.fromOpaque(raw).release()
    requestCls.pointee = nil
    Unmanaged<ServerContext>.fromOpaque(cls).takeUnretainedValue().inFlight.subtract(1, ordering: .relaxed)
}

/// 413, and the connection closes after it.
private func tooLarge(_ server: ServerContext) -> HTTPResponse {
    var response = HTTPResponse.problem(
        status: 413, title: "Content Too Large", detail: "request body exceeds \(server.maxBodyBytes) bytes")
    response.headers.append(("Connection", "close"))
    return response
}

private func queue(_ response: HTTPResponse, on connection: OpaquePointer, server: ServerContext) -> MHD_Result {
    let made: OpaquePointer?
    if let stream = response.stream {
        let context = StreamContext(stream: stream, connection: ConnectionPointer(pointer: connection))
        made = MHD_create_response_from_callback(
            UInt64.max, 16 * 1024, streamReader, Unmanaged.passRetained(context).toOpaque(), streamFreed)
    } else {
        made = response.body.withUnsafeBytes { bytes in
            MHD_create_response_from_buffer(
                bytes.count, UnsafeMutableRawPointer(mutating: bytes.baseAddress), .RESPMEM_MUST_COPY)
        }
    }
    guard let made else { return MHD_Result.NO }
    defer { MHD_destroy_response(made) }
    for (name, value) in response.headers { MHD_add_response_header(made, name, value) }
    for (name, value) in server.defaultHeaders where !response.headers.contains(where: { $0.0.caseInsensitiveEquals(name) }) {
        MHD_add_response_header(made, name, value)
    }
    return MHD_queue_response(connection, UInt32(response.status), made)
}

private func makeRequest(
    connection: OpaquePointer, url: String, method: String, body: [UInt8], transport: Transport
) -> HTTPRequest {
    let headers = KeyValueCollector(isHeaders: true)
    let query = KeyValueCollector(isHeaders: false)
    MHD_get_connection_values(connection, .HEADER_KIND, collectKeyValue, Unmanaged.passUnretained(headers).toOpaque())
    MHD_get_connection_values(connection, .GET_ARGUMENT_KIND, collectKeyValue, Unmanaged.passUnretained(query).toOpaque())
    var addressBytes = [CChar](repeating: 0, count: 64)
    procref_mhd_client_address(connection, &addressBytes, addressBytes.count)
    let address = addressBytes.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    var request = HTTPRequest(
        method: method, path: url, queryItems: query.items, headers: headers.values, body: body,
        transport: transport, remoteAddress: address)
    request.connectionFD = procref_mhd_connection_fd(connection)
    if transport == .unix, let raw = procref_mhd_socket_context(connection) {
        request.peer = Unmanaged<PeerBox>.fromOpaque(raw).takeUnretainedValue().peer
    }
    return request
}

/// Headers (names lowercased, into `values`) or query parameters (in order, into `items`).
private final class KeyValueCollector {
    let isHeaders: Bool
    var values: [String: String] = [:]
    var items: [(name: String, value: String)] = []
    init(isHeaders: Bool) { self.isHeaders = isHeaders }
}

private let collectKeyValue: MHD_KeyValueIterator = { cls, _, key, value in
    guard let cls, let key else { return MHD_Result.YES }
    let collector = Unmanaged<KeyValueCollector>.fromOpaque(cls).takeUnretainedValue()
    let name = String(cString: key)
    let text = value.map { String(cString: $0) } ?? ""
    guard collector.isHeaders else {
        // Query parameters: all kept in order; the first value of a repeated name wins in `query`.
        collector.items.append((name, text))
        return MHD_Result.YES
    }
    // Header names: most clients send them capitalized; lowercasing allocates, so only then.
    let lowercase = name.utf8.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") } ? name.lowercased() : name
    // Repeated headers combine as one comma-separated value (RFC 9110 §5.3).
    if let existing = collector.values[lowercase] {
        collector.values[lowercase] = existing + ", " + text
    } else {
        collector.values[lowercase] = text
    }
    return MHD_Result.YES
}

/// A streamed response in flight: bytes not yet handed to MHD, and the connection to
/// suspend while the stream has nothing to say. Only MHD's calls for this response touch it.
final class StreamContext: @unchecked Sendable {
    let stream: HTTPBodyStream
    let connection: ConnectionPointer
    var pending: [UInt8] = []

    init(stream: HTTPBodyStream, connection: ConnectionPointer) {
        self.stream = stream
        self.connection = connection
    }
}

/// MHD asks for more body: hand over pending bytes, or suspend until the stream wakes us.
let streamReader: MHD_ContentReaderCallback = { cls, _, buffer, max in
    guard let cls, let buffer else { return -2 }  // MHD_CONTENT_READER_END_WITH_ERROR
    let context = Unmanaged<StreamContext>.fromOpaque(cls).takeUnretainedValue()
    if context.pending.isEmpty {
        guard let next = context.stream.next() else { return -1 }  // MHD_CONTENT_READER_END_OF_STREAM
        if next.isEmpty {
            // Returning 0 is allowed only with the connection suspended (no busy loop).
            let connection = context.connection
            MHD_suspend_connection(connection.pointer)
            context.stream.whenReadable { MHD_resume_connection(connection.pointer) }
            return 0
        }
        context.pending = next
    }
    let count = min(max, context.pending.count)
    context.pending.withUnsafeBytes { bytes in
        UnsafeMutableRawPointer(buffer).copyMemory(from: bytes.baseAddress!, byteCount: count)
    }
    context.pending.removeFirst(count)
    return count
}

let streamFreed: MHD_ContentReaderFreeCallback = { cls in
    guard let cls else { return }
    let context = Unmanaged<StreamContext>.fromOpaque(cls).takeRetainedValue()
    context.stream.close()
}

extension String {
    /// ASCII header names compared without allocating (letters, digits and `-` only differ
    /// in bit 0x20 by case).
    fileprivate func caseInsensitiveEquals(_ other: String) -> Bool {
        var mine = utf8.makeIterator()
        var theirs = other.utf8.makeIterator()
        while true {
            switch (mine.next(), theirs.next()) {
            case (nil, nil): return true
            case let (a?, b?) where a | 0x20 == b | 0x20: continue
            default: return false
            }
        }
    }
}
