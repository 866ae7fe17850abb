// swift-tools-version:6.1
// dsv4: an inference server for DeepSeek-V4-architecture MoE models.
//
// Targets are layered so that dependencies point one way:
//   CKernels (C) -> Numerics -> Checkpoint -> ModelRuntime -> DeepSeekV4 -> CLI
// The model never imports the engine or the server; the server never sees a tensor.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "dsv4",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dsv4", targets: ["CLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
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
        .target(name: "Numerics", dependencies: ["CKernels"], swiftSettings: swiftSettings),
        .target(name: "Checkpoint", dependencies: ["Numerics"], swiftSettings: swiftSettings),
        .target(name: "ModelRuntime", dependencies: ["Numerics"], swiftSettings: swiftSettings),
        .target(name: "Tokenization", swiftSettings: swiftSettings),
        .target(name: "PagedCache", dependencies: ["ModelRuntime"], swiftSettings: swiftSettings),
        .target(name: "Engine", dependencies: ["ModelRuntime", "PagedCache"], swiftSettings: swiftSettings),
        .target(
            name: "DeepSeekV4",
            dependencies: ["Numerics", "Checkpoint", "ModelRuntime"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "CLI",
            dependencies: [
                "CKernels", "Numerics", "Checkpoint", "ModelRuntime", "DeepSeekV4", "PagedCache", "Engine", "Tokenization",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "TokenizationTests", dependencies: ["Tokenization"], swiftSettings: swiftSettings),
        .testTarget(name: "PagedCacheTests", dependencies: ["PagedCache", "ModelRuntime"], swiftSettings: swiftSettings),
        .testTarget(
            name: "EngineTests", dependencies: ["Engine", "PagedCache", "ModelRuntime", "DeepSeekV4"],
            swiftSettings: swiftSettings),
        .testTarget(name: "CLITests", dependencies: ["Checkpoint"], swiftSettings: swiftSettings),
        .testTarget(name: "KernelTests", dependencies: ["Numerics", "CKernels"], swiftSettings: swiftSettings),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Numerics"], swiftSettings: swiftSettings),
        .testTarget(
            name: "DeepSeekV4Tests",
            dependencies: ["DeepSeekV4", "Checkpoint", "Numerics", "ModelRuntime"],
            swiftSettings: swiftSettings
        ),
    ]
)
