// swift-tools-version:6.1
// dsv4: an inference server for DeepSeek-V4-architecture MoE models.
//
// Targets are layered so that dependencies point one way:
//   CKernels (C) -> Tensors -> Checkpoint -> ModelRuntime -> DeepSeekV4 -> CLI
// The model never imports the engine or the server; the server never sees a tensor.
import PackageDescription

// NOTE: Linux on x86-64 only. The C kernels include <immintrin.h> and pick AVX-512 paths with
// __builtin_cpu_supports; the loader maps weights with Linux's madvise(MADV_HUGEPAGE). Rather
// than declare a platform it cannot build on (it used to say macOS 14, which Hummingbird needs
// there), the manifest refuses any other host up front, with this reason.
#if !(os(Linux) && arch(x86_64))
#error("dsv4 builds on Linux x86-64 only: its C kernels use x86 intrinsics and Linux memory advice")
#endif

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "dsv4",
    products: [
        .executable(name: "dsv4", targets: ["CLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // traits: [] keeps Hummingbird's build flags deterministic (see shared/notes/swift-build.md).
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // Already in the graph through Hummingbird; named because Server imports them directly.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // Hot loops in C, AVX-512 paths chosen at run time, each next to a scalar twin.
        .target(
            name: "CKernels",
            path: "kernels",
            cSettings: [
                .unsafeFlags(["-O3"], .when(configuration: .release)),
                .unsafeFlags(["-O2"], .when(configuration: .debug)),
                .unsafeFlags(["-Wall", "-Wextra", "-Wno-unused-parameter"]),
            ]
        ),
        .target(name: "Tensors", dependencies: ["CKernels"], swiftSettings: swiftSettings),
        .target(name: "Checkpoint", dependencies: ["Tensors"], swiftSettings: swiftSettings),
        .target(name: "ModelRuntime", dependencies: ["Tensors", "CKernels"], swiftSettings: swiftSettings),
        // Wire types of the HTTP APIs (JSON values, chat requests, error bodies): Foundation only.
        .target(name: "OpenAIAPI", swiftSettings: swiftSettings),
        .target(name: "Tokenization", dependencies: ["OpenAIAPI"], swiftSettings: swiftSettings),
        // The disk tier's batched I/O (io_uring behind its own header; Swift never sees
        // liburing.h) and CRC-32C.
        .target(
            name: "CDiskIO",
            cSettings: [.unsafeFlags(["-O2", "-Wall", "-Wextra"])],
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(name: "PagedCache", dependencies: ["ModelRuntime", "CDiskIO"], swiftSettings: swiftSettings),
        .target(name: "Engine", dependencies: ["ModelRuntime", "PagedCache"], swiftSettings: swiftSettings),
        // Open MPI (shim for the handle macros Swift cannot import), and expert parallelism over it.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(
            name: "ExpertParallel", dependencies: ["CMPI", "ModelRuntime", "Tensors", "CKernels", "Checkpoint"],
            swiftSettings: swiftSettings),
        .target(
            name: "Server",
            dependencies: [
                "Engine", "OpenAIAPI", "Tokenization",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DeepSeekV4",
            dependencies: ["Tensors", "Checkpoint", "ModelRuntime", "CKernels"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "CLI",
            dependencies: [
                "CKernels", "Tensors", "Checkpoint", "ModelRuntime", "DeepSeekV4", "PagedCache", "Engine", "OpenAIAPI", "Tokenization", "Server",
                "ExpertParallel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization", "OpenAIAPI"], swiftSettings: swiftSettings),
        .testTarget(name: "PagedCacheTests", dependencies: ["PagedCache", "ModelRuntime"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EngineTests", dependencies: ["Engine", "PagedCache", "ModelRuntime", "DeepSeekV4"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ServerTests", dependencies: ["Server", "Engine", "OpenAIAPI", "Tokenization", "ModelRuntime"],
            swiftSettings: swiftSettings),
        .testTarget(name: "CLITests", dependencies: ["Checkpoint"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ExpertParallelTests", dependencies: ["ExpertParallel", "ModelRuntime", "Tensors"], swiftSettings: swiftSettings),
        .testTarget(name: "KernelTests", dependencies: ["Tensors", "CKernels"], swiftSettings: swiftSettings),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Tensors"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DeepSeekV4Tests",
            dependencies: ["DeepSeekV4", "Checkpoint", "Tensors", "ModelRuntime"],
            swiftSettings: swiftSettings
        ),
    ]
)
