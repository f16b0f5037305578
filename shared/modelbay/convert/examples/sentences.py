"""Evaluation sentences for the MiniLM embedder's accuracy gate.

Hand-written across registers (news, chat, support tickets, code, recipes,
questions, fragments, numbers, a little non-English) so the gate sees short and
long inputs; ``sentences()`` adds deterministic recombinations of several
different sentence shapes to reach a few hundred without one repeated template.
"""

from __future__ import annotations

import random

HANDWRITTEN = [
    "The train to Lyon was delayed by forty minutes because of a signal failure.",
    "Can you reset my password? I no longer have access to the old email address.",
    "Preheat the oven to 200 degrees and roast the carrots for twenty-five minutes.",
    "The central bank kept interest rates unchanged for the third month in a row.",
    "lol that was the worst movie I've seen all year",
    "Where is the nearest pharmacy that is open on Sunday?",
    "def add(a, b): return a + b",
    "SELECT name, price FROM products WHERE price > 100 ORDER BY price DESC;",
    "Our quarterly revenue grew 12% year over year, driven by cloud subscriptions.",
    "The cat slept on the warm windowsill all afternoon.",
    "A magnitude 5.8 earthquake struck off the coast early on Tuesday morning.",
    "Please find attached the signed contract and the updated invoice.",
    "I think the bug is in the retry loop: it never resets the backoff timer.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The museum's new wing displays ceramics from the Ming dynasty.",
    "Is it safe to take ibuprofen and paracetamol together?",
    "He scored twice in the second half and the home crowd went wild.",
    "Kubernetes restarts the pod when the liveness probe fails three times.",
    "Thanks!",
    "ok",
    "Good morning everyone, the stand-up is moved to 10:30 today.",
    "The hiking trail climbs 800 metres through pine forest before reaching the lake.",
    "My package says delivered but there is nothing at my door.",
    "Quantum computers use qubits that can exist in superpositions of states.",
    "Add two eggs, a pinch of salt and whisk until the mixture is smooth.",
    "The senator announced she would not run for re-election next year.",
    "Battery life dropped sharply after the latest firmware update.",
    "What is the capital of Australia?",
    "Canberra is the capital of Australia, not Sydney.",
    "The orchestra closed the concert with Dvořák's ninth symphony.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der Zug nach Berlin fährt um acht Uhr ab.",
    "El restaurante abre a las nueve de la noche.",
    "Remember to water the tomatoes every evening during the heat wave.",
    "The defendant pleaded not guilty to all charges.",
    "Error 503: service temporarily unavailable, please retry later.",
    "I love how the light changes in autumn.",
    "The startup raised a $40 million Series B led by a European fund.",
    "Vaccines train the immune system to recognise a specific pathogen.",
    "Our flight was cancelled, so we spent the night at the airport hotel.",
    "Use a mutex to protect the shared counter from concurrent writes.",
    "The river burst its banks after three days of heavy rain.",
    "Can I return shoes that I have already worn outside once?",
    "The recipe calls for 250 g of flour, 100 g of butter and 2 tablespoons of sugar.",
    "Mars has two small moons called Phobos and Deimos.",
    "Meeting notes: agreed to ship v2 on Friday; Anna owns the migration.",
    "The novel follows three generations of a family of fishermen in Norway.",
    "Turn left at the second roundabout and the office is on your right.",
    "Stock markets fell sharply after the inflation figures were published.",
    "The printer on the third floor is jammed again.",
    "Deep learning models need large amounts of labelled data to generalise.",
    "She planted sunflowers along the fence and they grew taller than the shed.",
    "The referee showed a red card after a dangerous tackle in the 70th minute.",
    "How do I convert a PyTorch model to ONNX?",
    "Export the model with dynamic batch size and check the outputs match.",
    "The bakery on the corner sells the best croissants in town.",
    "Climate scientists warn that glaciers in the Alps could vanish by 2100.",
    "I'm running late, start without me.",
    "The lease ends in March and the landlord wants to raise the rent by 8%.",
    "Whales communicate using low-frequency sounds that travel for kilometres.",
    "The app crashes whenever I rotate the screen while a video is playing.",
    "Students must submit their essays before midnight on Thursday.",
    "A good night's sleep improves memory consolidation.",
    "The bridge will be closed to traffic for repairs until the end of June.",
    "Why does my sourdough starter smell like nail polish remover?",
    "The museum is free on the first Sunday of every month.",
    "Install the dependencies with pip and run the test suite before pushing.",
    "Volcanic ash forced the closure of several airports in northern Europe.",
    "Her debut album mixes jazz harmonies with electronic beats.",
    "Tap water in this region is safe to drink.",
    "The company recalled 20,000 cars because of a faulty brake sensor.",
    "I'd like to book a table for four at eight o'clock.",
    "Gradient descent updates parameters in the direction that reduces the loss.",
    "Fresh snow fell overnight, and the ski resorts open early this season.",
    "The committee postponed its decision until more data is available.",
    "Could you explain the difference between a virus and a bacterium?",
    "This laptop is lightweight but the keyboard feels cheap.",
    "The garden party was cancelled due to the thunderstorm warning.",
    "Neurons transmit signals across synapses using neurotransmitters.",
    "We need three more volunteers for the beach clean-up on Saturday.",
    "The lighthouse has guided ships along this coast since 1872.",
    "Refunds are processed within five to seven business days.",
    "The documentary explores how coral reefs recover after bleaching.",
    "My dog refuses to walk in the rain.",
    "Inflation eased slightly in October but food prices kept rising.",
    "Use caching to avoid recomputing expensive results on every request.",
    "The choir rehearses every Wednesday evening in the church hall.",
    "Heavy traffic is expected on the motorway this holiday weekend.",
    "The patient reported mild headaches and occasional dizziness.",
    "A new species of frog was discovered in the rainforest of Ecuador.",
    "git rebase -i HEAD~3",
    "The contract may be terminated by either party with thirty days' notice.",
    "I can't decide between the blue sofa and the green one.",
    "The telescope captured images of a galaxy thirteen billion light years away.",
    "Wash your hands before preparing food.",
    "The city council approved a plan to add 50 kilometres of bike lanes.",
    "Why is the sky blue?",
    "Rayleigh scattering makes shorter blue wavelengths spread across the sky.",
    "Our team won the regional chess tournament for the second time.",
    "The firmware update fixes a security vulnerability in the Bluetooth stack.",
    "He apologised for the misunderstanding and offered a discount.",
    "Lunch is on me today.",
    "The old mill was converted into apartments and a small cinema.",
    "Exercise regularly, eat vegetables, and get enough sleep.",
    "The negotiations collapsed after both sides refused to compromise.",
    "Migrating birds use the Earth's magnetic field to navigate.",
    "Set the thermostat to 19 degrees at night to save energy.",
    "Please do not reply to this automated message.",
    "The painting was sold at auction for three times its estimated price.",
    "How many calories are in a banana?",
    "The marathon route passes through all five boroughs of the city.",
    "Our support team is available Monday to Friday from 9 am to 6 pm.",
    "The algorithm runs in O(n log n) time and uses constant extra memory.",
    "Fog delayed the ferry crossing by two hours.",
    "The festival lineup includes over sixty bands from twelve countries.",
    "I finally finished reading that thousand-page novel.",
    "The spacecraft entered orbit around Jupiter after a five-year journey.",
    "Keep the receipt in case you need to exchange the item.",
    "This sentence is intentionally rather long, meandering through several clauses, "
    "mentioning trains, gardens, databases, a forgotten umbrella and the smell of rain, "
    "so that the embedder has to pool over many more tokens than usual before it decides "
    "what the whole thing is about.",
]

_SUBJECTS = [
    "The engineer",
    "My neighbour",
    "The committee",
    "A small startup",
    "The old teacher",
    "Our support team",
    "The research group",
    "A tourist",
    "The mayor",
    "The chef",
]
_VERBS = [
    "reviewed",
    "postponed",
    "celebrated",
    "questioned",
    "rebuilt",
    "announced",
    "cancelled",
    "translated",
    "repaired",
    "praised",
]
_OBJECTS = [
    "the quarterly budget",
    "the broken bridge",
    "a new recipe for lentil soup",
    "the software release",
    "the village festival",
    "an unusual weather forecast",
    "the museum exhibition",
    "the training schedule",
    "the customer complaint",
    "the solar panel installation",
]
_PLACES = [
    "in Lisbon",
    "at the station",
    "near the harbour",
    "on the night shift",
    "during the storm",
    "after the meeting",
    "in the lab",
    "at the market",
]
_TOPICS = [
    "machine learning",
    "gardening",
    "tax returns",
    "football",
    "jazz",
    "train tickets",
    "kidney stones",
    "cloud storage",
    "wedding planning",
    "electric cars",
]


def _composed(rng: random.Random, n: int) -> list[str]:
    shapes = [
        lambda: f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_PLACES)}.",
        lambda: f"Does anyone know a good book about {rng.choice(_TOPICS)}?",
        lambda: f"{rng.choice(_TOPICS).capitalize()}",
        lambda: f"I spent the whole weekend reading about {rng.choice(_TOPICS)} and {rng.choice(_TOPICS)}.",
        lambda: f"Why {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_PLACES)}?",
        lambda: f"Update: {rng.choice(_OBJECTS)} is delayed; {rng.choice(_SUBJECTS).lower()} will follow up.",
        lambda: f"{rng.randint(2, 90)} people attended the talk on {rng.choice(_TOPICS)} {rng.choice(_PLACES)}.",
        lambda: (
            f"{rng.choice(_SUBJECTS)} said that {rng.choice(_OBJECTS)} {rng.choice(_PLACES)} "
            f"was {rng.choice(['a success', 'a mess', 'surprisingly cheap', 'far too slow', 'worth it'])}."
        ),
    ]
    return [rng.choice(shapes)() for _ in range(n)]


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    """``n`` sentences: every hand-written one first, then composed ones."""
    rng = random.Random(seed)
    out = list(HANDWRITTEN)
    seen = set(out)
    for s in _composed(rng, 4 * n):
        if len(out) >= n:
            break
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out[:n]
