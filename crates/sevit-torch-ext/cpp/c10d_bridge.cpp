// A C ABI over libtorch's distributed engine (c10d), used by sevit-distill's `distributed`
// module: a TCPStore rendezvous, a Gloo (CPU) or NCCL (CUDA) process group, and the three
// collectives data-parallel training needs (all-reduce sum, broadcast). Tensors cross the
// boundary as the `at::Tensor*` that tch's `Tensor::as_ptr()` returns (torch-sys' `C_tensor`).
//
// Every entry point that can fail reports through `err, err_len` (error.h); nothing throws
// across the C boundary.

#include <chrono>
#include <cstdint>


#include <stdexcept>
#include <string>
#include <vector>

#include "error.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#ifdef SEVIT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct ProcessGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  bool nccl;
};

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// The Gloo transport device: GLOO_SOCKET_IFNAME as in PyTorch, the loopback address when the
// master is on loopback (single-node runs and tests never listen elsewhere), else the address
// this machine's hostname resolves to.
std::shared_ptr<gloo::transport::Device> gloo_device(const std::string& master) {
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (is_loopback(master)) {
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

void wait_work(const ProcessGroup& pg, const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  if (!work->wait(pg.timeout)) {
    throw std::runtime_error(std::string(what) + " did not complete within the process-group timeout");
  }
}

} // namespace

extern "C" {

// 1 when this build can create NCCL process groups.
int sevit_c10d_has_nccl() {
#ifdef SEVIT_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

// Rendezvous through a TCPStore at host:port (rank 0 serves it on `listen_fd`, a socket it
// already bound and listens on; -1 lets libtorch bind one) and creates the process group.
// `backend` is "gloo" or "nccl". Returns NULL and writes `err` on failure.
void* sevit_c10d_new(
    const char* backend,
    const char* host,
    int port,
    int listen_fd,
    int rank,
    int world_size,
    int64_t timeout_ms,
    char* err,
    size_t err_len) {
  ProcessGroup* out = nullptr;
  sevit::guarded(err, err_len, [&] {
    const std::string b(backend);
    const std::string master(host);
    const auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
    if (rank == 0 && listen_fd >= 0) {
      so.masterListenFd = listen_fd;
    }
    auto store = c10::make_intrusive<c10d::TCPStore>(master, so);
    c10::intrusive_ptr<c10d::Backend> pg;
    bool nccl = false;
    if (b == "gloo") {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      opts->devices.push_back(gloo_device(master));
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, opts);
    } else if (b == "nccl") {
#ifdef SEVIT_WITH_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
      nccl = true;
#else
      throw std::runtime_error(
          "this sevit build has no NCCL support (nccl.h or the CUDA headers were not found when "
          "sevit-torch-ext was built); use the gloo backend or rebuild against a CUDA libtorch");
#endif
    } else {
      throw std::runtime_error("unknown c10d backend \"" + b + "\" (expected gloo or nccl)");
    }
    out = new ProcessGroup{store, pg, timeout, nccl};
  });
  return out;
}

// In-place sum of `tensor` (a contiguous at::Tensor*) over all ranks.
int sevit_c10d_allreduce_sum(void* pg, void* tensor, char* err, size_t err_len) {
  return sevit::guarded(err, err_len, [&] {
    auto& p = *static_cast<ProcessGroup*>(pg);
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = p.timeout;
    wait_work(p, p.backend->allreduce(ts, o), "all-reduce");
  });
}

// Overwrites `tensor` on every rank with rank `root`'s.
int sevit_c10d_broadcast(void* pg, void* tensor, int root, char* err, size_t err_len) {
  return sevit::guarded(err, err_len, [&] {
    auto& p = *static_cast<ProcessGroup*>(pg);
    std::vector<at::Tensor> ts{*static_cast<at::Tensor*>(tensor)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = p.timeout;
    wait_work(p, p.backend->broadcast(ts, o), "broadcast");
  });
}

// Shuts the process group down and frees it.
void sevit_c10d_free(void* pg) {
  auto* p = static_cast<ProcessGroup*>(pg);
  if (p == nullptr) {
    return;
  }
  try {
    if (p->nccl) {
      p->backend->shutdown();
    }
  } catch (...) {
  }
  delete p;
}

} // extern "C"
