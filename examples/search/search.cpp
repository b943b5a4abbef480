// search: a whole lamda search through the library API, as `lamda generate TASK --out DIR
// --objective capacity` runs it: the offline designer proposes, every candidate is validated,
// analysed and measured on this CPU through XNNPACK, the best feasible one is confirmed, and
// DIR gets best.lamda, report.json, report.html and journal.jsonl.
//
//   lamda_search_example TASK.json OUT_DIR [MAX_CANDIDATES]
//
// With libtorch (lamda::torch), pass a Trainer (train/trainer.hpp) instead of nullptr to search
// for accuracy; without one the search maximises capacity (MACs) within the task's limits.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include <lamda/lamda.hpp>

int main(int argc, char** argv) {
    if (argc < 3 || argc > 4) {
        std::fprintf(stderr, "usage: %s TASK.json OUT_DIR [MAX_CANDIDATES]\n", argv[0]);
        return lamda::exit_code(lamda::ExitCode::usage);
    }
    try {
        lamda::Task task = lamda::read_task(argv[1]);
        task.objective = lamda::Objective::Capacity;  // no trainer in this example
        task.objective_given = true;
        if (argc == 4) task.budget.max_candidates = std::atoi(argv[3]);

        std::filesystem::remove_all(argv[2]);  // a fresh search each run
        lamda::OfflineDesigner proposer(/*seed=*/1);
        lamda::GenerateOptions options;
        options.out_dir = argv[2];
        options.task_file = argv[1];
        options.runs = 10;
        options.confirm_runs = 50;
        options.status = &std::cerr;

        const lamda::GenerateOutcome outcome = lamda::generate(task, proposer, /*trainer=*/nullptr, options);
        if (!outcome.best) {
            std::cerr << "no feasible model in " << outcome.result.records.size() << " candidates\n";
            return lamda::exit_code(lamda::ExitCode::failed);
        }
        std::cout << "best: " << lamda::candidate_summary(outcome.result.records[*outcome.best]) << "\n"
                  << "wrote " << (std::filesystem::path(argv[2]) / "best.lamda").string()
                  << ", report.json, report.html, journal.jsonl\n";
        return lamda::exit_code(lamda::ExitCode::ok);
    } catch (const lamda::Exception& e) {
        std::cerr << e.what() << "\n";
        return lamda::exit_code(lamda::exit_code_for(e.kind()));
    }
}
