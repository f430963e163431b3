#include "state.h"

#include <torch/torch.h>

#include <map>
#include <sstream>
#include <stdexcept>

namespace clamp {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

}  // namespace

void append_module_state(const std::string& prefix, torch::nn::Module& module, std::vector<NamedTensor>& out) {
  for (const auto& item : module.named_parameters(true)) out.push_back({prefix + item.key(), item.value()});
  for (const auto& item : module.named_buffers(true)) out.push_back({prefix + item.key(), item.value()});
}

void copy_named_state(const std::vector<NamedTensor>& live, const std::vector<NamedTensor>& saved, const std::string& what_fits) {
  std::map<std::string, at::Tensor> by_name;
  for (const auto& item : saved) by_name[item.name] = item.tensor;
  std::vector<std::string> problems;
  for (const auto& item : live) {
    const auto found = by_name.find(item.name);
    if (found == by_name.end()) {
      problems.push_back(item.name + " is missing");
    } else if (found->second.sizes() != item.tensor.sizes()) {
      problems.push_back(item.name + " has shape " + shape_of(found->second) + ", " + what_fits + " needs " + shape_of(item.tensor));
    } else if (found->second.scalar_type() != item.tensor.scalar_type()) {
      problems.push_back(item.name + " is " + std::string(c10::toString(found->second.scalar_type())) + ", " + what_fits + " needs " +
                         c10::toString(item.tensor.scalar_type()));
    }
  }
  if (!problems.empty()) {
    std::string message = "the saved state does not fit " + what_fits + " (" + std::to_string(problems.size()) + " problem(s)): ";
    for (size_t k = 0; k < problems.size() && k < 5; ++k) message += (k ? "; " : "") + problems[k];
    if (problems.size() > 5) message += "; ...";
    throw std::invalid_argument(message);
  }
  torch::NoGradGuard no_grad;
  for (const auto& item : live) item.tensor.copy_(by_name[item.name]);
}

}  // namespace clamp
