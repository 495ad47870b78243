#include "controller/kinds.h"

#include "controller/delete_kind.h"
#include "controller/gc_kind.h"
#include "controller/restore_kind.h"
#include "controller/snapshot_kind.h"
#include "controller/verify_kind.h"

namespace shutter::controller {

std::vector<std::unique_ptr<JobKind>> StandardKinds(const KindContext& ctx) {
  std::vector<std::unique_ptr<JobKind>> kinds;
  kinds.push_back(std::make_unique<SnapshotKind>(
      ctx.transport, ctx.repo, ctx.rpc_timeout, ctx.on_snapshot_commit));
  kinds.push_back(std::make_unique<RestoreKind>(ctx.transport, ctx.rpc_timeout,
                                                ctx.registry));
  kinds.push_back(std::make_unique<VerifyKind>(ctx.transport, ctx.rpc_timeout,
                                               ctx.on_verify_commit));
  kinds.push_back(
      std::make_unique<GcKind>(ctx.repo, ctx.gc_wait_for_publishes));
  kinds.push_back(std::make_unique<DeleteKind>(ctx.repo));
  return kinds;
}

}  // namespace shutter::controller
