// Declarations only; see cpp/gloo_decls/README.md in sevit-distill.
#pragma once

namespace gloo {
namespace transport {
// Created by libtorch (ProcessGroupGloo::createDeviceFor*), held by std::shared_ptr.
class Device;
// Held by std::unique_ptr in ProcessGroupGloo's send/recv work objects.
class UnboundBuffer;
} // namespace transport
} // namespace gloo
