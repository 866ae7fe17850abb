// SafetensorsTests.swift: reading, writing, and every way a safetensors file or a sharded
// folder can be broken.
import Checkpoint
import Foundation
import Testing

func tempDir() throws -> String {
    let d = NSTemporaryDirectory() + "dsv4-ckpt-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// A raw file: 8-byte length, header text, data bytes.
func rawFile(_ path: String, header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) {
    var out = Data()
    var len = (lengthOverride ?? UInt64(header.utf8.count)).littleEndian
    out.append(Data(bytes: &len, count: 8))
    out.append(Data(header.utf8))
    out.append(contentsOf: data)
    FileManager.default.createFile(atPath: path, contents: out)
}

@Suite struct SafetensorsTests {
    @Test func writeThenReadRoundTrip() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let values: [Float] = [1, -2.5, 3, 0.125, 7, 8]
        try SafetensorsWriter.write(
            ["a": TensorBlob(shape: [2, 3], floats: values),
             "ids": TensorBlob(dtype: .i64, shape: [2], bytes: [Int64(5), -1].withUnsafeBufferPointer { Data(buffer: $0) })],
            metadata: ["format": "pt"], to: d + "/model.safetensors")
        let store = try TensorStore(directory: d)
        #expect(store.names == ["a", "ids"])
        #expect(try store.tensor("a", shape: [2, 3]).floats() == values)
        #expect(try store.tensor("ids").integers() == [5, -1])
        #expect(store.files[0].metadata["format"] == "pt")
        #expect(throws: CheckpointError.shapeMismatch(tensor: "a", path: d + "/model.safetensors", expected: [3, 2], actual: [2, 3])) {
            try store.tensor("a", shape: [3, 2])
        }
        #expect(throws: CheckpointError.missingTensor(name: "b", directory: d, files: ["model.safetensors"])) { try store.tensor("b") }
        // Messages name the tensor and where it was looked for.
        #expect(store.missing("b").description == "missing tensor 'b': not in \(d) (model.safetensors)")
        #expect("\(CheckpointError.shapeMismatch(tensor: "a", path: "/m/x.safetensors", expected: [3], actual: [2]))"
            == "tensor 'a' in /m/x.safetensors has shape [2], expected [3]")
    }

    @Test func truncatedAndCorruptFilesAreLocated() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let p = d + "/x.safetensors"

        FileManager.default.createFile(atPath: p, contents: Data([1, 2, 3]))
        #expect(throws: CheckpointError.truncated(path: p, reason: "file has 3 bytes, fewer than the 8-byte header length")) { try SafetensorsFile(path: p) }

        rawFile(p, header: "{}", lengthOverride: 1000)
        #expect(throws: CheckpointError.truncated(path: p, reason: "header length 1000 exceeds the 2 bytes after it")) { try SafetensorsFile(path: p) }

        rawFile(p, header: "{\"a\": {\"dtype\": \"F32\", ")
        #expect(throws: CheckpointError.corruptHeader(path: p, reason: "header is not valid JSON")) { try SafetensorsFile(path: p) }

        rawFile(p, header: "[1,2]")
        #expect(throws: CheckpointError.corruptHeader(path: p, reason: "header is not a JSON object")) { try SafetensorsFile(path: p) }

        rawFile(p, header: #"{"w":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}"#, data: [0, 0])
        #expect(throws: CheckpointError.unknownDType(tensor: "w", dtype: "Q4_K", path: p)) { try SafetensorsFile(path: p) }

        rawFile(p, header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, data: Array(repeating: 0, count: 12))
        #expect(throws: CheckpointError.badDataOffsets(tensor: "w", path: p, reason: "holds 12 bytes but shape [2] of F32 needs 8")) { try SafetensorsFile(path: p) }

        rawFile(p, header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: Array(repeating: 0, count: 8))
        #expect(throws: CheckpointError.truncated(path: p, reason: "tensor 'w' ends at byte 16 of a 8-byte data section")) { try SafetensorsFile(path: p) }

        rawFile(p, header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, data: Array(repeating: 0, count: 4))
        #expect(throws: CheckpointError.corruptHeader(path: p, reason: "entry 'w' has no valid shape")) { try SafetensorsFile(path: p) }

        #expect(throws: CheckpointError.fileNotFound(path: d + "/absent.safetensors")) { try SafetensorsFile(path: d + "/absent.safetensors") }
    }

    @Test func shardedFolders() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try SafetensorsWriter.write(["a": TensorBlob(shape: [2], floats: [1, 2])], to: d + "/m-1.safetensors")
        try SafetensorsWriter.write(["b": TensorBlob(shape: [1], floats: [3])], to: d + "/m-2.safetensors")
        func index(_ map: [String: String]) throws {
            let data = try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": map])
            try data.write(to: URL(fileURLWithPath: d + "/model.safetensors.index.json"))
        }
        try index(["a": "m-1.safetensors", "b": "m-2.safetensors"])
        let store = try TensorStore(directory: d)
        #expect(try store.tensor("b").floats() == [3])
        #expect(store.files.count == 2)

        try index(["a": "m-1.safetensors", "b": "m-3.safetensors"])
        #expect(throws: CheckpointError.missingShard(path: d + "/m-3.safetensors", index: d + "/model.safetensors.index.json", tensor: "b", tensorCount: 1)) { try TensorStore(directory: d) }

        try index(["a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-2.safetensors"])
        #expect(throws: CheckpointError.corruptHeader(path: d + "/model.safetensors.index.json", reason: "index lists 'c' in m-2.safetensors but that file does not hold it")) { try TensorStore(directory: d) }

        try SafetensorsWriter.write(["a": TensorBlob(shape: [1], floats: [9]), "b": TensorBlob(shape: [1], floats: [3])], to: d + "/m-2.safetensors")
        try index(["a": "m-1.safetensors", "b": "m-2.safetensors"])
        #expect(throws: CheckpointError.duplicateTensor(name: "a", firstPath: d + "/m-1.safetensors", secondPath: d + "/m-2.safetensors")) { try TensorStore(directory: d) }

        #expect(throws: CheckpointError.fileNotFound(path: d + "/nope")) { try TensorStore(directory: d + "/nope") }
    }

    /// Without an index, model.safetensors is the model and other safetensors files next to it
    /// (a fixture's reference.safetensors) are not; they were read as unknown tensors before.
    @Test func singleFileFolderIgnoresOtherSafetensors() throws {
        let d = try tempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        try SafetensorsWriter.write(["logits": TensorBlob(shape: [1], floats: [1])], to: d + "/reference.safetensors")
        try SafetensorsWriter.write(["x": TensorBlob(shape: [1], floats: [2])], to: d + "/other.safetensors")
        #expect(try TensorStore(directory: d).names == ["logits", "x"])
        try SafetensorsWriter.write(["w": TensorBlob(shape: [1], floats: [3])], to: d + "/model.safetensors")
        let store = try TensorStore(directory: d)
        #expect(store.names == ["w"] && store.files.count == 1)
    }
}
