#include "cli/common.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/text.h"
#include "google/protobuf/util/json_util.h"

namespace shutter::cli {

bool g_tls_used = false;

int Fail(absl::string_view msg, int code) {
  std::fprintf(stderr, "shutterctl: %s\n", EscapeForTerminal(msg).c_str());
  return code;
}

int FailRpc(const grpc::Status& s, absl::string_view what) {
  std::string hint;
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    hint = g_tls_used ? " (check --tls-ca/--tls-cert: the controller's "
                        "certificate must chain to the CA and name the "
                        "address dialled)"
                      : " (if the controller uses TLS, pass --tls-ca)";
  }
  return Fail(absl::StrCat(
      what, ": ",
      absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())),
      ": ", s.error_message(), hint));
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto text = fs::ReadFile(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: cannot read ", path));
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    return std::string(parts.back());
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--token-file: ", path, " holds no token"));
}

std::string Json(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string TaskStateName(shutter::v1::PartitionTaskState s) {
  std::string n = shutter::v1::PartitionTaskState_Name(s);
  return n.substr(std::string("PARTITION_TASK_STATE_").size());
}

std::string Percent(double fraction) {
  if (fraction < 0) return "-";
  return absl::StrFormat("%.0f%%", fraction * 100);
}

std::string NewRequestId() {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  return absl::StrFormat("%016x%016x", rng(), rng());
}

Client::Client(const Global& g) : g_(g) {
  for (absl::string_view a : absl::StrSplit(g.controller, ',')) {
    if (!a.empty()) addresses_.emplace_back(a);
  }
  if (addresses_.empty()) addresses_.push_back(g.controller);
  current_ = addresses_.front();
}

shutter::v1::AdminService::Stub* Client::Stub(const std::string& address) {
  auto& stub = stubs_[address];
  if (stub == nullptr) {
    stub = shutter::v1::AdminService::NewStub(MakeChannel(address));
  }
  return stub.get();
}

bool Client::Next(const grpc::ClientContext& ctx) {
  const auto& trailers = ctx.GetServerTrailingMetadata();
  auto it = trailers.find("shutter-leader");
  if (it != trailers.end() && it->second.size() > 0) {
    std::string leader(it->second.data(), it->second.size());
    if (leader != current_) {
      current_ = std::move(leader);
      return true;
    }
  }
  auto at = std::find(addresses_.begin(), addresses_.end(), current_);
  current_ = at == addresses_.end() || at + 1 == addresses_.end()
                 ? addresses_.front()
                 : *(at + 1);
  return false;
}

}  // namespace shutter::cli
