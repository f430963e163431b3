// The core tests' tiny harness: counted checks and a closing "N passed, N failed" line for ctest's log.
#pragma once

#include <functional>
#include <iostream>
#include <stdexcept>
#include <string>

namespace clamp::testing {

inline int& failures() {
  static int count = 0;
  return count;
}
inline int& passes() {
  static int count = 0;
  return count;
}

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++passes();
  } else {
    ++failures();
    std::cerr << "FAIL: " << what << "\n";
  }
}

// fn must throw std::invalid_argument whose message contains needle.
inline void check_throws(const std::function<void()>& fn, const std::string& needle, const std::string& what) {
  try {
    fn();
    check(false, what + ": no error");
  } catch (const std::invalid_argument& error) {
    check(std::string(error.what()).find(needle) != std::string::npos, what + ": message '" + error.what() + "' lacks '" + needle + "'");
  }
}

inline int summary() {
  std::cout << passes() << " passed, " << failures() << " failed\n";
  return failures() == 0 ? 0 : 1;
}

}  // namespace clamp::testing
