"""Hand-written prompts outside the training benchmarks, to check the router's ordering.

Each list pairs "easy" prompts (chit-chat, formatting, short writing: the small model is
enough) with "hard" ones (multi-step math, proofs, puzzles, real code tasks). A router that
generalises should score the hard ones higher: `order_accuracy` is the share of (hard, easy)
pairs it orders that way (0.5 = no better than chance). The first list was written together
with `router.prior`; the second was written after the prior was fixed and never used to
tune it. `frugate router sanity` prints both for a router.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["SANITY_LISTS", "order_accuracy"]

EASY_1 = (
    "Hi! How are you today?",
    "Thanks, that was helpful.",
    "Tell me a joke about cats.",
    "Write a haiku about autumn.",
    "Draft a professional email to my boss asking for leave.",
    "What is the capital of France?",
    "Translate 'good morning, see you tomorrow' into Spanish.",
    "Convert this list to JSON: apples, pears, plums.",
    "Rewrite this sentence in a more formal tone: gonna be late, sorry.",
    "Give me three synonyms for happy.",
    "Summarize in one sentence: The meeting was moved from Monday to Wednesday because the "
    "room was booked.",
    "Make this text all caps: hello world",
    "What's a good name for a golden retriever puppy?",
    "Suggest a title for my blog post about houseplants.",
    "Fix the typos: Teh quick brwon fox jumsp over the lazy dog.",
)
HARD_1 = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "A train leaves at 3:15 pm travelling 80 km/h; a second train leaves the same station at "
    "4:00 pm at 110 km/h on the same track. At what time and distance does the second train "
    "catch up? Show your reasoning.",
    "Solve the integral of x^2 sin(x) dx step by step.",
    "Prove that there are infinitely many primes of the form 4k+3.",
    "Implement a red-black tree in Rust with insertion and deletion, and explain the invariants.",
    "Write a Python function that parses an arithmetic expression with +, -, *, / and "
    "parentheses into an AST and evaluates it, with unit tests.",
    "Five people sit in a row. Alice is not next to Bob, Carol sits exactly two seats from "
    "Dan, and Eve is at one end. How many seatings are possible? Explain.",
    "Design a lock-free multi-producer multi-consumer queue in C++ and argue why it is "
    "linearizable.",
    "A bag has 4 red and 6 blue balls. Three are drawn without replacement. What is the "
    "probability that exactly two are red, given that at least one is red?",
    "Find all real solutions of x^4 - 5x^2 + 4 = 0 and verify each one.",
    "Given an array of n integers, find the length of the longest increasing subsequence in "
    "O(n log n) time. Write the code and prove its correctness.",
    "If all bloops are razzies and some razzies are lazzies, does it follow that some bloops "
    "are lazzies? Explain carefully.",
    "Write a SQL query that returns, for each department, the employee with the third highest "
    "salary, handling ties, and explain the window functions used.",
    "A company's revenue grew 12% in year one, fell 8% in year two and grew 15% in year "
    "three. What is the compound annual growth rate over the three years?",
    "Refactor this recursive Fibonacci into an iterative version with memoization, analyse "
    "both complexities, and add type hints:\n\ndef fib(n):\n    return n if n < 2 else "
    "fib(n-1) + fib(n-2)",
)
EASY_2 = (
    "Good morning! Hope your weekend went well.",
    "Can you turn this into a bulleted list: eggs, milk, bread, butter",
    "Say 'happy birthday' in French, German and Italian.",
    "Write a two-line rhyme for a birthday card for my sister.",
    "What colour do you get when you mix blue and yellow?",
    "Shorten this: We would like to kindly inform you that the office will be closed on Friday.",
    "Who wrote Romeo and Juliet?",
    "Reply politely declining a meeting invitation for Thursday.",
    "Put these words in alphabetical order: pear, apple, mango, banana.",
    "Give me a fun fact about octopuses.",
)
HARD_2 = (
    "A tank is filled by pipe A in 6 hours and by pipe B in 9 hours, and drained by pipe C "
    "in 12 hours. With all three open, how long does it take to fill the empty tank?",
    "My Go service deadlocks under load when two goroutines acquire mutexes in different "
    "orders. Explain how to find and fix it, with code.",
    "Show that the sum of the first n odd numbers equals n squared, by induction.",
    "Write a function in TypeScript that merges overlapping intervals, and give its time "
    "complexity.",
    "Three boxes are labelled apples, oranges and mixed, and every label is wrong. You may "
    "pick one fruit from one box. How do you relabel all boxes correctly? Explain the "
    "reasoning.",
    "Compute the determinant and the inverse of the matrix [[2, 1, 0], [1, 3, 1], [0, 1, 4]].",
    "Design the database schema and the REST API for a multi-tenant invoicing system, "
    "including how you would handle currency conversion and audit logs.",
    "A shop raises a price by 20% and later lowers the new price by 20%. If the final price "
    "is $96, what was the original price? Explain each step.",
    "Implement Dijkstra's algorithm in Python with a binary heap and explain why it fails "
    "with negative edge weights.",
    "What is the expected number of rolls of a fair die until the first six appears, and "
    "what is the variance?",
)

# name -> (easy prompts, hard prompts)
SANITY_LISTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "written with the prior": (EASY_1, HARD_1),
    "written after (held out)": (EASY_2, HARD_2),
}


def order_accuracy(easy: npt.ArrayLike, hard: npt.ArrayLike) -> float:
    """Share of (hard, easy) pairs where the hard prompt scores higher (ties count half)."""
    e, h = np.asarray(easy, dtype=np.float64), np.asarray(hard, dtype=np.float64)
    diff = h[:, None] - e[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)
