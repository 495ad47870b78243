#ifndef SHUTTER_CLI_TABLE_H_
#define SHUTTER_CLI_TABLE_H_

#include <string>
#include <vector>

namespace shutter::cli {

// A plain-text table with left-aligned columns separated by two spaces.
class Table {
 public:
  explicit Table(std::vector<std::string> header) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "1.5 GiB", "12.0 KiB", "512 B".
std::string HumanBytes(uint64_t bytes);
// "2026-11-27 09:46:34" (UTC) or "-" for 0.
std::string HumanTime(int64_t micros);

}  // namespace shutter::cli

#endif  // SHUTTER_CLI_TABLE_H_
