#include "node/controller_term.h"

#include "absl/strings/str_cat.h"
#include "common/error_reason.h"

namespace shutter::node {

void ControllerTerm::Observe(uint64_t term) {
  uint64_t seen = newest_.load();
  while (term > seen && !newest_.compare_exchange_weak(seen, term)) {
  }
}

absl::Status ControllerTerm::Admit(uint64_t term, absl::string_view what) {
  Observe(term);
  const uint64_t newest = newest_.load();
  if (term >= newest) return absl::OkStatus();
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        what, " refused: it comes from controller term ", term,
                        ", older than term ", newest,
                        " this node has seen (a deposed leader)")),
                    ErrorReason::kStaleController);
}

}  // namespace shutter::node
