#ifndef SHUTTER_NODE_CHECKPOINT_STREAM_H_
#define SHUTTER_NODE_CHECKPOINT_STREAM_H_

#include <functional>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/rpc.h"
#include "shutter/v1/node.grpc.pb.h"

namespace shutter::node {

// The server side of NodeService.CheckpointStream (node.proto), for the
// reference node and for any service that embeds its own checkpoint
// handling: reads requests as they come, hands each to `handle` with a
// callback that answers it (once, from any thread, at any time: an answer
// that comes after the stream is over is dropped), and writes the answers
// in the order they are given, one message in flight at a time: answers
// given while one is being written go out together in the next. The stream
// ends OK once the caller has closed its side and every request is
// answered; when the caller goes away it ends at once. `calls`, if not
// null, counts each request as a call in flight until it is answered (so
// a node's shutdown waits for checkpoints asked over streams as for unary
// calls).
using CheckpointReply = absl::AnyInvocable<
    void(absl::StatusOr<shutter::v1::CreateCheckpointResponse>) &&>;
using CheckpointHandler = std::function<void(
    const shutter::v1::CreateCheckpointRequest&, CheckpointReply)>;

grpc::ServerBidiReactor<shutter::v1::CheckpointStreamRequest,
                        shutter::v1::CheckpointStreamResponse>*
ServeCheckpointStream(CheckpointHandler handle,
                      std::shared_ptr<CallTracker> calls = nullptr);

// A reactor that ends the stream at once with `status` (a refused caller).
grpc::ServerBidiReactor<shutter::v1::CheckpointStreamRequest,
                        shutter::v1::CheckpointStreamResponse>*
RefuseCheckpointStream(const grpc::Status& status);

}  // namespace shutter::node

#endif  // SHUTTER_NODE_CHECKPOINT_STREAM_H_
