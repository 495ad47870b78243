#ifndef SHUTTER_COMMON_QUEUE_THREAD_H_
#define SHUTTER_COMMON_QUEUE_THREAD_H_

#include <grpcpp/completion_queue.h>

#include <thread>

namespace shutter {

// A gRPC completion queue and the one thread, named `name`, that serves it
// (ServeQueueTags, common/rpc.h: every tag on it is a QueueTag). For
// clients that have no queue of the process to share. Destroying it shuts
// the queue down and waits until it is drained, so every operation started
// on it must have completed (or been cancelled) by then.
class QueueThread {
 public:
  explicit QueueThread(const char* name);
  ~QueueThread();
  QueueThread(const QueueThread&) = delete;
  QueueThread& operator=(const QueueThread&) = delete;

  grpc::CompletionQueue* queue() { return &cq_; }

 private:
  grpc::CompletionQueue cq_;
  std::thread thread_;
};

}  // namespace shutter

#endif  // SHUTTER_COMMON_QUEUE_THREAD_H_
